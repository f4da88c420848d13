"""The one chokepoint every artifact passes before a backend sees it (registration and every load).

Order, cheapest and most decisive first (the sha256 check happens just before, in the loader):

1. format from the bytes (:mod:`service.security.sniff`) - must be one of ``backend.formats``;
2. code-carrying backends (TorchScript, ``.pt2``) only for admin principals;
3. structure and caps before any allocation: zip entries (no ``..``/absolute names, no zip bombs), pickle
   pre-scan (:mod:`service.security.pickle_scan`) with tensor count and declared bytes, safetensors header
   (dtype, shape x itemsize == byte span, offsets inside the file and non-overlapping), ONNX external data.

Pure standard library: the core never imports torch or onnx.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

from service.errors import ArtifactRejected
from service.plugins.contract import ArtifactFormat, Backend
from service.security.pickle_scan import PickleSummary, scan_pickle_file, scan_torch_zip
from service.security.sniff import onnx_external_tensor, read_safetensors_header, safe_zip_entries, sniff_format

__all__ = ("DEFAULT_LIMITS", "GuardLimits", "MAX_TENSORS", "inspect_artifact")

MAX_TENSORS = 200_000

_SAFETENSORS_ITEMSIZE = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "C64": 8,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}


@dataclass(frozen=True, slots=True)
class GuardLimits:
    """Caps checked from headers and opcodes, before a backend allocates anything."""

    max_tensors: int = MAX_TENSORS
    """Most tensors one artifact may declare (safetensors entries, pickle storages)."""
    max_pickle_member_bytes: int = 256 * 1024 * 1024
    """Largest ``.pkl`` member of a torch zip (the pickle holds structure only, tensors live beside it)."""
    max_unpacked_ratio: float = 4.0
    """Zip entries may declare at most this many times the archive's size (torch stores entries
    uncompressed; a larger ratio means a zip bomb)."""
    min_unpacked_allowance: int = 64 * 1024 * 1024
    """...or this many bytes, whichever is larger (small archives with compressed code entries)."""


DEFAULT_LIMITS = GuardLimits()


def _check_zip_sizes(path: Path, entries: list[zipfile.ZipInfo], limits: GuardLimits) -> None:
    archive_size = path.stat().st_size
    unpacked = sum(info.file_size for info in entries)
    allowance = max(int(archive_size * limits.max_unpacked_ratio), limits.min_unpacked_allowance)
    if unpacked > allowance:
        raise ArtifactRejected(
            f"zip archive declares {unpacked} unpacked bytes from {archive_size} on disk: refused as a zip bomb"
        )


def _check_declared(summary: PickleSummary, size: int, limits: GuardLimits) -> None:
    if summary.tensors > limits.max_tensors:
        raise ArtifactRejected(f"artifact declares {summary.tensors} tensors (limit {limits.max_tensors})")
    if summary.declared_bytes > size:
        raise ArtifactRejected(
            f"tensors declare {summary.declared_bytes} bytes but the artifact has only {size}: refused "
            "before allocating"
        )


def _check_safetensors(path: Path, limits: GuardLimits) -> None:
    header = read_safetensors_header(path)
    tensors = {name: meta for name, meta in header.items() if name != "__metadata__"}
    if len(tensors) > limits.max_tensors:
        raise ArtifactRejected(f"safetensors file declares {len(tensors)} tensors (limit {limits.max_tensors})")
    with path.open("rb") as fh:
        data_size = path.stat().st_size - 8 - int.from_bytes(fh.read(8), "little")
    spans: list[tuple[int, int, str]] = []
    for name, meta in tensors.items():
        label = str(name)[:64]
        if not isinstance(meta, dict):
            raise ArtifactRejected(f"safetensors tensor '{label}' has no description")
        dtype, shape, offsets = meta.get("dtype"), meta.get("shape"), meta.get("data_offsets")
        itemsize = _SAFETENSORS_ITEMSIZE.get(dtype) if isinstance(dtype, str) else None
        if itemsize is None:
            raise ArtifactRejected(f"safetensors tensor '{label}' has unknown dtype {str(dtype)[:16]!r}")
        if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in shape)):
            raise ArtifactRejected(f"safetensors tensor '{label}' has no valid shape")
        if any(d < 0 for d in shape):
            raise ArtifactRejected(f"safetensors tensor '{label}' has a negative dimension")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise ArtifactRejected(f"safetensors tensor '{label}' has no valid data_offsets")
        start, end = offsets
        if not 0 <= start <= end <= data_size:
            raise ArtifactRejected(f"safetensors tensor '{label}' points outside the file (truncated?)")
        if math.prod(shape) * itemsize != end - start:
            raise ArtifactRejected(
                f"safetensors tensor '{label}': shape {shape} x {dtype} is {math.prod(shape) * itemsize} bytes "
                f"but its data span is {end - start}"
            )
        spans.append((start, end, label))
    spans.sort()
    for (_s1, end1, first), (start2, _e2, second) in zip(spans, spans[1:], strict=False):
        if start2 < end1:
            raise ArtifactRejected(f"safetensors tensors '{first}' and '{second}' overlap")


def inspect_artifact(
    path: Path,
    backend: Backend,
    *,
    backend_name: str,
    principal_is_admin: bool,
    limits: GuardLimits = DEFAULT_LIMITS,
) -> ArtifactFormat:
    """Return the artifact's format once it is safe to hand to ``backend``.

    Runs in a worker thread, on every registration and every engine load, after the sha256 check. Reads
    headers, zip central directories and pickle opcodes only; never unpickles and never imports torch/onnx.

    Raises:
        ArtifactRejected: with a message fit for the uploader, e.g. ``not a recognised model artifact: looks
            like a PNG image``, ``backend 'onnx' cannot load a torchscript artifact``, or ``refused: the
            pickle references 'posix.system'``.
    """
    fmt = sniff_format(path)
    if fmt not in backend.formats:
        accepted = ", ".join(backend.formats)
        raise ArtifactRejected(f"backend '{backend_name}' cannot load a {fmt} artifact (it loads: {accepted})")
    if backend.executes_code and not principal_is_admin:
        raise ArtifactRejected(
            f"backend '{backend_name}' runs code carried by its artifacts ({fmt}): only admin keys may register it"
        )
    size = path.stat().st_size
    if fmt in ("torchscript", "torch_export", "torch_pickle_zip"):
        entries = safe_zip_entries(path)
        _check_zip_sizes(path, entries, limits)
        if fmt == "torch_pickle_zip":
            summary = scan_torch_zip(path, entries, max_member_bytes=limits.max_pickle_member_bytes)
            _check_declared(summary, size, limits)
    elif fmt == "pickle":
        _check_declared(scan_pickle_file(path), size, limits)
    elif fmt == "safetensors":
        _check_safetensors(path, limits)
    elif fmt == "onnx":
        external = onnx_external_tensor(path)
        if external is not None:
            raise ArtifactRejected(
                f"ONNX tensor '{external[:64]}' keeps its data in an external file: an artifact must be one "
                "self-contained file (re-save with onnx.save_model(model, path, save_as_external_data=False))"
            )
    return fmt
