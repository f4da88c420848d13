"""Pre-scan pickles opcode by opcode, without unpickling: only tensor-rebuilding globals may appear.

This runs before ``torch.load(weights_only=True)`` as a second, independent wall: a payload whose
``__reduce__`` would run code names a global (``os.system``, ``builtins.exec``, ...) and is refused here,
before any byte reaches an unpickler.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from pathlib import Path

from service.errors import ArtifactRejected

__all__ = ("ALLOWED_GLOBALS", "UnsafePickle", "scan_pickle_bytes", "scan_torch_zip")

_STORAGES = [
    "FloatStorage",
    "DoubleStorage",
    "HalfStorage",
    "BFloat16Storage",
    "LongStorage",
    "IntStorage",
    "ShortStorage",
    "CharStorage",
    "ByteStorage",
    "BoolStorage",
    "ComplexFloatStorage",
    "ComplexDoubleStorage",
]
_DTYPES = [
    "float32",
    "float64",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
    "complex64",
    "complex128",
    "float",
    "double",
    "half",
    "long",
    "int",
    "short",
]
ALLOWED_GLOBALS = frozenset(
    {
        "collections.OrderedDict",
        "builtins.set",
        "builtins.frozenset",
        "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "torch._tensor._rebuild_from_type_v2",
        "torch.Tensor",
        "torch.nn.parameter.Parameter",
        "torch.Size",
        "torch.device",
        "torch.storage.UntypedStorage",
        "torch.storage.TypedStorage",
        *(f"torch.{name}" for name in _STORAGES),
        *(f"torch.{name}" for name in _DTYPES),
    }
)
_MAX_OPS = 20_000_000
_MAX_TENSORS = 200_000
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"}


class UnsafePickle(ArtifactRejected):
    """The pickle references something other than tensors and plain containers."""


def scan_pickle_bytes(data: bytes, *, where: str = "pickle") -> int:
    """Refuse any global outside :data:`ALLOWED_GLOBALS`; returns the number of persistent tensor storages."""
    strings: list[str] = []
    memo: dict[int, str] = {}
    storages = 0
    ops = 0
    try:
        for opcode, arg, _pos in pickletools.genops(io.BytesIO(data)):
            ops += 1
            if ops > _MAX_OPS:
                raise UnsafePickle(f"{where}: more than {_MAX_OPS} pickle opcodes")
            name = opcode.name
            if name in _STRING_OPS:
                strings.append(arg if isinstance(arg, str) else str(arg))
            elif name in ("BINPUT", "LONG_BINPUT", "PUT") and strings:
                memo[int(arg)] = strings[-1]
            elif name == "MEMOIZE" and strings:
                memo[len(memo)] = strings[-1]
            elif name in ("BINGET", "LONG_BINGET", "GET") and int(arg) in memo:
                strings.append(memo[int(arg)])
            elif name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                _check(f"{module}.{attr}", where)
            elif name == "STACK_GLOBAL":
                if len(strings) < 2:
                    raise UnsafePickle(f"{where}: STACK_GLOBAL with an unknown target")
                _check(f"{strings[-2]}.{strings[-1]}", where)
            elif name in ("EXT1", "EXT2", "EXT4"):
                raise UnsafePickle(f"{where}: pickle uses the extension registry, which is never allowed")
            elif name in ("BINPERSID", "PERSID"):
                storages += 1
                if storages > _MAX_TENSORS:
                    raise UnsafePickle(f"{where}: more than {_MAX_TENSORS} tensors")
    except UnsafePickle:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed pickles are refused, whatever pickletools raises
        raise ArtifactRejected(f"{where}: malformed or truncated pickle ({type(exc).__name__}: {exc})") from None
    return storages


def _check(qualified: str, where: str) -> None:
    if qualified not in ALLOWED_GLOBALS:
        raise UnsafePickle(
            f"{where}: refused: the pickle references '{qualified}', which is not a tensor or plain container "
            "(use safetensors, or a state_dict of tensors)"
        )


def scan_torch_zip(path: Path) -> int:
    """Scan every ``.pkl`` member of a ``torch.save`` zip archive."""
    total = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.filename.endswith(".pkl"):
                if info.file_size > 512 * 1024 * 1024:
                    raise UnsafePickle(f"{info.filename}: pickle member too large")
                total += scan_pickle_bytes(archive.read(info), where=info.filename)
    return total
