"""The one chokepoint every artifact passes before a backend sees it (registration and every load).

Order, cheapest and most decisive first (the sha256 check and the size cap happen just before, in the loader
and the upload):

1. archive structure, for any zip whatever its format: no ``..``/absolute/duplicate/encrypted entries, no
   zip bombs (:func:`service.security.sniff.safe_zip_entries`);
2. the format, from the bytes: the backend's own :class:`~service.plugins.ArtifactInspector`, else the
   core's sniffer for the built-in formats; it must be one of ``backend.formats``. A backend that takes a
   pickle-bearing built-in format must bring an inspector (which pre-scans it with
   :mod:`service.security.pickle_scan` and its own allow-list): the core refuses to hand it over unscanned;
3. code-carrying backends (``executes_code``) only for admin principals;
4. the core's own structural checks of the generic formats it knows, whoever named them: safetensors
   headers (dtype, shape x itemsize == byte span, offsets inside the file and non-overlapping) and ONNX
   external data.

Pure standard library: the core never imports torch or onnx, and knows no backend's format names.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable
from pathlib import Path

from service.errors import ArtifactRejected
from service.plugins.contract import Backend
from service.plugins.inspection import (
    DEFAULT_LIMITS,
    MAX_TENSORS,
    ArtifactFile,
    ArtifactFormat,
    ArtifactInspector,
    ArtifactLimits,
)
from service.security.sniff import (
    PICKLE_FORMATS,
    onnx_external_tensor,
    read_safetensors_header,
    safe_zip_entries,
    sniff_format,
)

__all__ = ("DEFAULT_LIMITS", "MAX_TENSORS", "ArtifactLimits", "BuiltinSniffer", "inspect_artifact")

_ZIP_MAGIC = b"PK\x03\x04"


class BuiltinSniffer(ArtifactInspector):
    """The fallback for backends without an inspector: :func:`service.security.sniff.sniff_format`."""

    def inspect(self, artifact: ArtifactFile) -> ArtifactFormat:
        """The built-in format the bytes have, or a refusal saying what they look like."""
        return sniff_format(artifact.path)


_BUILTIN = BuiltinSniffer()


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


def _check_zip_sizes(path: Path, entries: list[zipfile.ZipInfo], limits: ArtifactLimits) -> None:
    archive_size = path.stat().st_size
    unpacked = sum(info.file_size for info in entries)
    allowance = max(int(archive_size * limits.max_unpacked_ratio), limits.min_unpacked_allowance)
    if unpacked > allowance:
        raise ArtifactRejected(
            f"zip archive declares {unpacked} unpacked bytes from {archive_size} on disk: refused as a zip bomb"
        )


def _check_safetensors(artifact: ArtifactFile) -> None:
    path, limits = artifact.path, artifact.limits
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


def _check_onnx(artifact: ArtifactFile) -> None:
    external = onnx_external_tensor(artifact.path)
    if external is not None:
        raise ArtifactRejected(
            f"ONNX tensor '{external[:64]}' keeps its data in an external file: an artifact must be one "
            "self-contained file (re-save with onnx.save_model(model, path, save_as_external_data=False))"
        )


_FORMAT_CHECKS: dict[ArtifactFormat, Callable[[ArtifactFile], None]] = {
    "safetensors": _check_safetensors,
    "onnx": _check_onnx,
}
"""Structural checks of the generic formats the core's sniffer knows; they run whoever named the format."""


def _vetted_zip_entries(path: Path, limits: ArtifactLimits) -> tuple[zipfile.ZipInfo, ...] | None:
    """A zip archive's entries once they are safe to walk; None when the file is no zip."""
    with path.open("rb") as fh:
        if fh.read(len(_ZIP_MAGIC)) != _ZIP_MAGIC:
            return None
    entries = safe_zip_entries(path)
    _check_zip_sizes(path, entries, limits)
    return tuple(entries)


def _run_inspector(inspector: ArtifactInspector, artifact: ArtifactFile, backend_name: str) -> ArtifactFormat:
    try:
        fmt = inspector.inspect(artifact)
    except ArtifactRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's inspector failing is a refusal, never a crash
        raise ArtifactRejected(
            f"backend '{backend_name}' could not inspect the artifact: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(fmt, str) or not fmt:
        raise ArtifactRejected(f"backend '{backend_name}': its inspector returned {fmt!r}, not a format id")
    return fmt


def inspect_artifact(
    path: Path,
    backend: Backend,
    *,
    backend_name: str,
    principal_is_admin: bool,
    limits: ArtifactLimits = DEFAULT_LIMITS,
) -> ArtifactFormat:
    """Return the artifact's format once it is safe to hand to ``backend``.

    Runs in a worker thread, on every registration and every engine load, after the sha256 check. Reads
    headers, zip central directories and (through inspectors) pickle opcodes only; never unpickles and never
    imports torch/onnx.

    Raises:
        ArtifactRejected: with a message fit for the uploader, e.g. ``not a recognised model artifact: looks
            like a PNG image``, ``backend 'onnx' cannot load a torchscript artifact``, or the message of the
            backend's inspector (``refused: the pickle references 'posix.system'``).
    """
    entries = _vetted_zip_entries(path, limits)
    artifact = ArtifactFile(path=path, size=path.stat().st_size, limits=limits, zip_entries=entries)
    fmt = _run_inspector(backend.inspector or _BUILTIN, artifact, backend_name)
    if fmt not in backend.formats:
        accepted = ", ".join(backend.formats)
        raise ArtifactRejected(f"backend '{backend_name}' cannot load a {fmt} artifact (it loads: {accepted})")
    if backend.inspector is None and fmt in PICKLE_FORMATS:
        raise ArtifactRejected(
            f"backend '{backend_name}' takes {fmt} artifacts but brings no inspector to pre-scan their pickles: "
            "refused (an inspector must scan them with service.security.pickle_scan)"
        )
    if backend.executes_code and not principal_is_admin:
        raise ArtifactRejected(
            f"backend '{backend_name}' runs code carried by its artifacts ({fmt}): only admin keys may register it"
        )
    check = _FORMAT_CHECKS.get(fmt)
    if check is not None:
        check(artifact)
    return fmt
