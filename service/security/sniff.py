"""Artifact format from the bytes, never from the file name or a Content-Type."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

from service.errors import ArtifactRejected
from service.plugins.contract import ArtifactFormat

__all__ = ("sniff_format", "zip_members")

_MAGIC_NAMES = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows executable"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"#!", "a script"),
)
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


def zip_members(path: Path) -> list[str]:
    """Entry names of a zip artifact; refuses absolute or parent-escaping names."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArtifactRejected(f"artifact is a damaged or truncated zip archive: {exc}") from None
    for name in names:
        if name.startswith("/") or ".." in Path(name).parts or "\\" in name:
            raise ArtifactRejected(f"zip entry '{name[:100]}' would escape the archive")
    return names


def _zip_format(path: Path) -> ArtifactFormat:
    names = zip_members(path)
    tails = {name.split("/", 1)[1] if "/" in name else name for name in names}
    if any(t.startswith("code/") for t in tails) and "constants.pkl" in tails:
        return "torchscript"
    if any(
        "serialized_exported_program" in t or t.startswith("models/") or t == "archive_format" for t in tails
    ) or any(n.endswith(".json") and "/models/" in n for n in names):
        return "torch_export"
    if "data.pkl" in tails:
        return "torch_pickle_zip"
    raise ArtifactRejected("zip archive is not a TorchScript, torch.export or torch.save file")


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 10:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 2 <= header_len <= min(_MAX_SAFETENSORS_HEADER, size - 8) and head[8:9] == b"{"


_ONNX_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2}
"""ModelProto top-level field number -> protobuf wire type (0 varint, 2 length-delimited)."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _looks_like_onnx(path: Path, head: bytes) -> bool:
    """Walk ModelProto's top-level fields: every tag valid, lengths in bounds, a graph (field 7) present."""
    if head[:1] != b"\x08":
        return False
    data = path.read_bytes()
    pos, seen_graph = 0, False
    try:
        while pos < len(data):
            tag, pos = _varint(data, pos)
            field, wire = tag >> 3, tag & 7
            if _ONNX_FIELDS.get(field) != wire:
                return False
            if wire == 0:
                _, pos = _varint(data, pos)
            else:
                length, pos = _varint(data, pos)
                pos += length
                if pos > len(data):
                    return False
            seen_graph |= field == 7
    except ValueError:
        return False
    return seen_graph


def sniff_format(path: Path) -> ArtifactFormat:
    """Classify an artifact; ArtifactRejected says what it looks like when it is no model format we load."""
    size = path.stat().st_size
    if size < 8:
        raise ArtifactRejected(f"artifact is only {size} bytes: truncated or empty")
    with path.open("rb") as fh:
        head = fh.read(64)
    if head[:4] == b"PK\x03\x04":
        return _zip_format(path)
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if _is_safetensors(head, size):
        with path.open("rb") as fh:
            (header_len,) = struct.unpack("<Q", fh.read(8))
            try:
                json.loads(fh.read(header_len))
            except (ValueError, UnicodeDecodeError):
                raise ArtifactRejected("safetensors header is not valid JSON") from None
        return "safetensors"
    if _looks_like_onnx(path, head):
        return "onnx"
    for magic, name in _MAGIC_NAMES:
        if head.startswith(magic):
            raise ArtifactRejected(f"not a recognised model artifact: looks like {name}")
    raise ArtifactRejected("not a recognised model artifact (ONNX, TorchScript, .pt2, torch.save or safetensors)")
