"""The one chokepoint every artifact passes before a backend sees it (registration and every load).

Format from the bytes (must be one the backend accepts) -> code-carrying formats only from admins ->
pickle pre-scan -> safetensors header caps. The sha256 check happens just before, in the loader.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from service.errors import ArtifactRejected
from service.plugins.contract import ArtifactFormat, Backend
from service.security.pickle_scan import scan_pickle_bytes, scan_torch_zip
from service.security.sniff import sniff_format

__all__ = ("inspect_artifact", "MAX_TENSORS")

MAX_TENSORS = 200_000


def _check_safetensors(path: Path) -> None:
    size = path.stat().st_size
    with path.open("rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(header_len))
    if not isinstance(header, dict):
        raise ArtifactRejected("safetensors header is not an object")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if len(tensors) > MAX_TENSORS:
        raise ArtifactRejected(f"safetensors file declares {len(tensors)} tensors (limit {MAX_TENSORS})")
    data_size = size - 8 - header_len
    for name, meta in tensors.items():
        offsets = meta.get("data_offsets") if isinstance(meta, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise ArtifactRejected(f"safetensors tensor '{str(name)[:64]}' has no valid data_offsets")
        start, end = offsets
        if not 0 <= start <= end <= data_size:
            raise ArtifactRejected(f"safetensors tensor '{str(name)[:64]}' points outside the file")


def inspect_artifact(path: Path, backend: Backend, *, backend_name: str, principal_is_admin: bool) -> ArtifactFormat:
    """Return the artifact's format once it is safe to hand to ``backend``; ArtifactRejected otherwise."""
    fmt = sniff_format(path)
    if fmt not in backend.formats:
        accepted = ", ".join(backend.formats)
        raise ArtifactRejected(f"backend '{backend_name}' cannot load a {fmt} artifact (it loads: {accepted})")
    if backend.executes_code and not principal_is_admin:
        raise ArtifactRejected(f"{fmt} artifacts can carry executable code: only admin keys may upload them")
    if fmt == "pickle":
        scan_pickle_bytes(path.read_bytes())
    elif fmt == "torch_pickle_zip":
        scan_torch_zip(path)
    elif fmt == "safetensors":
        _check_safetensors(path)
    return fmt
