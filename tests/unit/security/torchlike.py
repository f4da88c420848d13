"""Byte-exact imitations of torch's file formats, built without torch (core tests must run without it).

Pickles are assembled opcode by opcode (protocol 2, as ``torch.save`` writes them), so tests control every
global and persistent id; the zip layout matches ``torch.save`` (``<root>/data.pkl``, ``<root>/data/<key>``).
:data:`TORCHLIKE_POLICY` is a fake policy for the core's scanner: just the globals these files use (the real
allow-list is the torch plugin's decision, tested there).
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from service.security.pickle_scan import PicklePolicy

__all__ = (
    "TORCHLIKE_POLICY",
    "Payload",
    "global_op",
    "int_op",
    "legacy_torch_save",
    "state_dict_pickle",
    "unicode_op",
    "write_safetensors",
    "write_torch_zip",
)

PROTO2 = b"\x80\x02"
MARK, STOP, TUPLE, TUPLE1, REDUCE, EMPTY_TUPLE, SETITEMS = b"(", b".", b"t", b"\x85", b"R", b")", b"u"
BINPERSID, NEWFALSE = b"Q", b"\x89"

_STORAGES = {"torch.FloatStorage": 4, "torch.HalfStorage": 2, "torch.LongStorage": 8}
TORCHLIKE_POLICY = PicklePolicy(
    allowed_globals=frozenset(
        {
            "collections.OrderedDict",
            "builtins.set",
            "builtins.complex",
            "_codecs.encode",
            "torch._utils._rebuild_tensor_v2",
            "torch.Size",
            *_STORAGES,
        }
    ),
    storage_itemsize=_STORAGES,
    refusal_hint="which is not a tensor or plain container",
)


class Payload:
    """Unpickling this runs ``touch <marker>``: proof of code execution if the marker ever appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def global_op(module: str, name: str) -> bytes:
    """GLOBAL opcode: push ``module.name``."""
    return b"c" + f"{module}\n{name}\n".encode()


def unicode_op(text: str) -> bytes:
    """BINUNICODE opcode: push a str."""
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def int_op(value: int) -> bytes:
    """BININT opcode (signed 32-bit) or LONG1 for bigger values."""
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def state_dict_pickle(
    tensors: dict[str, int], *, storage: str = "FloatStorage", rebuild: tuple[str, str] | None = None
) -> bytes:
    """``torch.save(OrderedDict(name -> 1-D tensor of numel))`` as torch writes ``data.pkl``.

    Storage keys are "0", "1", ...; ``rebuild`` replaces ``torch._utils._rebuild_tensor_v2`` (to plant a
    foreign callable in an otherwise genuine file).
    """
    module, name = rebuild or ("torch._utils", "_rebuild_tensor_v2")
    body = PROTO2 + global_op("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE + MARK
    for key, (tensor, numel) in enumerate(tensors.items()):
        pid = MARK + unicode_op("storage") + global_op("torch", storage) + unicode_op(str(key))
        pid += unicode_op("cpu") + int_op(numel) + TUPLE + BINPERSID
        args = MARK + pid + int_op(0) + int_op(numel) + TUPLE1 + int_op(1) + TUPLE1 + NEWFALSE
        args += global_op("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE + TUPLE
        body += unicode_op(tensor) + global_op(module, name) + args + REDUCE
    return body + SETITEMS + STOP


def write_torch_zip(
    path: Path,
    data_pkl: bytes,
    storages: dict[str, bytes],
    *,
    root: str = "archive",
    extra: dict[str, bytes] | None = None,
) -> Path:
    """A ``torch.save`` zip: ``<root>/data.pkl``, ``<root>/data/<key>`` and the small bookkeeping records."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{root}/data.pkl", data_pkl)
        archive.writestr(f"{root}/byteorder", "little")
        for key, raw in storages.items():
            archive.writestr(f"{root}/data/{key}", raw)
        archive.writestr(f"{root}/version", "3\n")
        for name, raw in (extra or {}).items():
            archive.writestr(name, raw)
    return path


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], *, header_override: dict | None = None) -> Path:
    """A float32 safetensors file (header padded to 8 bytes as the library does)."""
    header: dict[str, object] = {}
    blobs, offset = [], 0
    for name, array in tensors.items():
        raw = np.ascontiguousarray(array, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header.update(header_override or {})
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))
    return path


def legacy_torch_save(state: bytes, keys: list[str], storages: list[bytes]) -> bytes:
    """The legacy (non-zip) ``torch.save`` layout: magic, protocol, sys info, object, keys, raw storages."""
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    version = pickle.dumps(1001, protocol=2)
    info = pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
    raw = b"".join(struct.pack("<q", len(blob) // 4) + blob for blob in storages)
    return magic + version + info + state + pickle.dumps(keys, protocol=2) + raw
