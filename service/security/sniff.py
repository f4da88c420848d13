"""What an artifact *is*, decided from its bytes, never from its file name or a Content-Type.

The core's sniffer for the built-in formats: the fallback for backends that bring no
:class:`~service.plugins.ArtifactInspector` of their own, and a library inspectors may call. Pure standard
library: the core must not import torch or onnx. Each check is structural (a zip central directory, a
safetensors JSON header, a walk over ONNX's top-level protobuf fields), so a PNG renamed to ``model.onnx`` or a
file cut short by a failed upload is refused with a message that says what it looks like.

Formats it recognises (format ids; plugins may define others):

- ``onnx``: a protobuf ``ModelProto`` (field 1 ``ir_version`` first, a ``graph`` field 7, every field in bounds).
- ``torchscript``: ``torch.jit.save`` zip (``<root>/code/...`` and ``<root>/constants.pkl``).
- ``torch_export``: ``torch.export.save`` ``.pt2`` zip (``<root>/archive_format``, ``<root>/models/*.json``).
- ``torch_pickle_zip``: ``torch.save`` zip (``<root>/data.pkl``, no code).
- ``pickle``: a raw pickle (protocol 2-5), e.g. the legacy ``torch.save(..., _use_new_zipfile_serialization=False)``.
- ``safetensors``: 8-byte little-endian header length, then a JSON object header, then the tensor bytes.
"""

from __future__ import annotations

import json
import mmap
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from service.errors import ArtifactRejected
from service.plugins.inspection import ArtifactFormat

__all__ = (
    "MAX_SAFETENSORS_HEADER_BYTES",
    "PICKLE_FORMATS",
    "onnx_external_reference",
    "onnx_external_tensor",
    "read_safetensors_header",
    "safe_zip_entries",
    "sniff_format",
)

MAX_SAFETENSORS_HEADER_BYTES = 100 * 1024 * 1024
"""The safetensors library's own limit: a larger header is refused before it is read."""
PICKLE_FORMATS: frozenset[ArtifactFormat] = frozenset({"torch_pickle_zip", "pickle"})
"""Sniffed formats whose bytes are pickles: a backend that loads them must pre-scan them in its own inspector."""
_MAX_ZIP_ENTRIES = 100_000
_MAX_ONNX_NESTING = 64

_MAGIC_NAMES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows executable"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"\x89HDF", "an HDF5 file (Keras .h5?)"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"#!", "a script"),
    (b"<", "an HTML/XML document"),
    (b"{", "a JSON document"),
)


# --------------------------------------------------------------------------------------------- zip archives


def _entry_name_problem(name: str) -> str | None:
    if not name or "\x00" in name:
        return "has an empty or NUL-containing name"
    if "\\" in name:
        return "uses a backslash path"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "would escape the archive ('..')"
    return None


def safe_zip_entries(path: Path) -> list[zipfile.ZipInfo]:
    """The entries of a zip artifact, after refusing ones that could escape or hide (zip-slip, duplicates).

    Reads only the central directory. Raises ArtifactRejected for a damaged or truncated archive, absolute
    or ``..`` names, duplicate names (two readers could disagree on which one is "the" entry), encrypted
    entries, or more than 100,000 entries.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise ArtifactRejected(f"artifact is a damaged or truncated zip archive ({exc})") from None
    if len(infos) > _MAX_ZIP_ENTRIES:
        raise ArtifactRejected(f"zip archive has {len(infos)} entries (limit {_MAX_ZIP_ENTRIES})")
    seen: set[str] = set()
    for info in infos:
        problem = _entry_name_problem(info.filename)
        if problem:
            raise ArtifactRejected(f"zip entry '{info.filename[:100]!s}' {problem}: refused")
        if info.filename in seen:
            raise ArtifactRejected(f"zip entry '{info.filename[:100]}' appears twice: refused")
        if info.flag_bits & 0x1:
            raise ArtifactRejected(f"zip entry '{info.filename[:100]}' is encrypted: refused")
        seen.add(info.filename)
    return infos


def _zip_format(path: Path) -> ArtifactFormat:
    """Classify a torch zip by its entries (torch writes everything under one ``<root>/`` folder)."""
    names = [info.filename for info in safe_zip_entries(path)]
    inner = {name.split("/", 1)[1] for name in names if "/" in name}
    if "constants.pkl" in inner and any(name.startswith("code/") for name in inner):
        return "torchscript"
    if "archive_format" in inner or any(
        name.startswith("models/") and name.endswith(".json") for name in inner
    ):  # torch.export.save (.pt2, torch 2.13: archive_format, models/model.json, data/weights/...)
        return "torch_export"
    if "data.pkl" in inner:
        return "torch_pickle_zip"
    raise ArtifactRejected(
        "zip archive is not a TorchScript (code/ + constants.pkl), torch.export (.pt2) or torch.save (data.pkl) file"
    )


# --------------------------------------------------------------------------------------------- safetensors


def _safetensors_header_length(head: bytes) -> int | None:
    """The declared header length when the first bytes have the safetensors shape, else None."""
    if len(head) < 9 or head[8:9] != b"{":
        return None
    (header_len,) = struct.unpack("<Q", head[:8])
    if header_len < 2 or header_len > MAX_SAFETENSORS_HEADER_BYTES:
        return None
    return int(header_len)


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The parsed JSON header of a safetensors file (tensor name -> {dtype, shape, data_offsets}).

    Raises ArtifactRejected when the header is cut short, is not a JSON object, or is over 100 MiB.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(9)
        header_len = _safetensors_header_length(head)
        if header_len is None:
            raise ArtifactRejected("not a safetensors file: bad header length or no JSON header")
        if 8 + header_len > size:
            raise ArtifactRejected(
                f"safetensors header declares {header_len} bytes but the file has {size - 8}: truncated"
            )
        fh.seek(8)
        raw = fh.read(header_len)
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ArtifactRejected("safetensors header is not valid JSON") from None
    if not isinstance(header, dict):
        raise ArtifactRejected("safetensors header is not a JSON object")
    return header


# --------------------------------------------------------------------------------------------- ONNX protobuf


class _Malformed(Exception):
    """The protobuf walk left the bytes: the file is not (or no longer) a whole ONNX model."""


def _varint(data: Any, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed("varint runs past its message")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: Any, start: int, end: int) -> Any:
    """Yield ``(field_number, wire_type, value_or_start, stop)`` for one message in ``data[start:end]``.

    Varints yield their value; length-delimited fields yield their byte range without reading it.
    """
    pos = start
    while pos < end:
        tag, pos = _varint(data, pos, end)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise _Malformed("field number 0")
        if wire == 0:
            value, pos = _varint(data, pos, end)
            yield field, wire, value, pos
        elif wire == 1:
            pos += 8
            if pos > end:
                raise _Malformed("fixed64 runs past its message")
            yield field, wire, None, pos
        elif wire == 2:
            length, pos = _varint(data, pos, end)
            stop = pos + length
            if stop > end:
                raise _Malformed("length-delimited field runs past its message")
            yield field, wire, pos, stop
            pos = stop
        elif wire == 5:
            pos += 4
            if pos > end:
                raise _Malformed("fixed32 runs past its message")
            yield field, wire, None, pos
        else:
            raise _Malformed(f"wire type {wire}")


_MODEL_WIRE = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
"""ModelProto's known fields -> wire type (0 varint, 2 length-delimited); unknown fields are skipped."""

# Where tensors can hide inside a model, by message kind: field number -> kind of the nested message.
_NESTED: Mapping[str, Mapping[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node", 11: "attribute"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}
_TENSOR_NAME, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION, _EXTERNAL = 8, 13, 14, 1


def _walk_model_fields(data: Any, size: int) -> None:
    """Refuse anything that is not a well-formed ModelProto at the top level (cheap: nested bytes skipped)."""
    seen_graph = False
    for index, (field, wire, value, _stop) in enumerate(_fields(data, 0, size)):
        if index == 0 and not (field == 1 and wire == 0 and 1 <= value <= 64):
            raise _Malformed("does not start with ir_version")
        expected = _MODEL_WIRE.get(field)
        if expected is not None and expected != wire:
            raise _Malformed(f"field {field} has wire type {wire}")
        seen_graph |= field == 7
    if not seen_graph:
        raise _Malformed("no graph")


def _external_location(data: Any, start: int, stop: int) -> str | None:
    """The value of a ``StringStringEntryProto`` whose key is ``location``, else None."""
    key = value_text = None
    for field, wire, value, end in _fields(data, start, stop):
        if wire == 2 and field in (1, 2):
            text = bytes(data[value:end]).decode("utf-8", "replace")
            key, value_text = (text, value_text) if field == 1 else (key, text)
    return value_text if key == "location" else None


def _tensor_is_external(data: Any, start: int, stop: int) -> tuple[str, str] | None:
    name, external, location = "", False, "?"
    for field, wire, value, end in _fields(data, start, stop):
        if field == _TENSOR_NAME and wire == 2:
            name = bytes(data[value:end]).decode("utf-8", "replace")
        elif field == _TENSOR_DATA_LOCATION and wire == 0 and value == _EXTERNAL:
            external = True
        elif field == _TENSOR_EXTERNAL_DATA and wire == 2:
            external = True
            found = _external_location(data, value, end)
            location = found if found is not None else location
    return (name or "<unnamed>", location) if external else None


def _find_external(data: Any, kind: str, start: int, stop: int, depth: int) -> tuple[str, str] | None:
    if depth > _MAX_ONNX_NESTING:
        raise _Malformed("graphs nested too deep")
    if kind == "tensor":
        return _tensor_is_external(data, start, stop)
    nested = _NESTED[kind]
    for field, wire, value, end in _fields(data, start, stop):
        child = nested.get(field)
        if child is not None and wire == 2:
            found = _find_external(data, child, value, end, depth + 1)
            if found is not None:
                return found
    return None


def onnx_external_tensor(path: Path) -> str | None:
    """The name of the first tensor stored outside the file (external data), or None.

    Walks every place a tensor can live (initializers, sparse initializers, Constant attributes, subgraphs,
    functions, training graphs) without reading tensor payloads: the file is memory-mapped and skipped over.
    Raises ArtifactRejected when the protobuf is damaged.
    """
    found = onnx_external_reference(path)
    return found[0] if found is not None else None


def onnx_external_reference(path: Path) -> tuple[str, str] | None:
    """``(tensor name, location)`` of the first tensor stored outside the file, or None; the location is the
    ``external_data`` entry ``location`` (``?`` when the tensor has none). The walk of
    :func:`onnx_external_tensor`, without the onnx package (whose import is ~4 MB of RSS)."""
    if path.stat().st_size == 0:
        raise ArtifactRejected("ONNX model is damaged (empty file)")
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        try:
            return _find_external(data, "model", 0, len(data), 0)
        except _Malformed as exc:
            raise ArtifactRejected(f"ONNX model is damaged ({exc})") from None


def _onnx_problem(path: Path, size: int) -> str | None:
    """None when the file is a well-formed ONNX ModelProto at the top level, else why not."""
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        try:
            _walk_model_fields(data, size)
        except _Malformed as exc:
            return str(exc)
    return None


# --------------------------------------------------------------------------------------------- entry point


def sniff_format(path: Path) -> ArtifactFormat:
    """Classify an artifact from its bytes.

    Raises:
        ArtifactRejected: naming what the bytes look like (``looks like a PNG image``) or what is wrong
            (truncated, damaged, an archive that is no torch format) when it is no format we load.
    """
    size = path.stat().st_size
    if size < 8:
        raise ArtifactRejected(f"artifact is only {size} bytes: truncated or empty")
    with path.open("rb") as fh:
        head = fh.read(64)
    if head.startswith(b"PK\x03\x04"):
        return _zip_format(path)
    if head[:1] == b"\x80" and 2 <= head[1] <= 5:
        return "pickle"
    header_len = _safetensors_header_length(head)
    if header_len is not None:
        read_safetensors_header(path)  # refuses truncated / non-JSON headers with a precise message
        return "safetensors"
    if head[:1] == b"\x08":
        problem = _onnx_problem(path, size)
        if problem is None:
            return "onnx"
        if head[1:2] and 1 <= head[1] <= 64:  # an ir_version varint: an ONNX model, damaged or cut short
            raise ArtifactRejected(f"looks like a truncated or damaged ONNX model ({problem})")
    for magic, name in _MAGIC_NAMES:
        if head.startswith(magic):
            raise ArtifactRejected(f"not a recognised model artifact: looks like {name}")
    raise ArtifactRejected(
        "not a recognised model artifact (expected ONNX, TorchScript, torch.export .pt2, torch.save or safetensors)"
    )
