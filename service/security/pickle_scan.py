"""Pre-scan pickles opcode by opcode, without unpickling: only the globals a policy allows may appear.

A library for backends whose formats carry pickles (the torch plugin calls it with torch's tensor-rebuilding
allow-list before ``torch.load(weights_only=True)``, as a second, independent wall). A payload whose
``__reduce__`` would run code has to name a callable (``os.system``, ``builtins.exec``, ...) through a
``GLOBAL``/``STACK_GLOBAL`` opcode; the scan refuses any global outside :attr:`PicklePolicy.allowed_globals`
before a single byte reaches an unpickler. Which formats need a scan, and what they may reference, is the
backend's decision (in its :class:`~service.plugins.ArtifactInspector`), not the core's.

The scan keeps a symbolic stack and memo, as the unpickler would, so ``STACK_GLOBAL`` is checked against
the two values really on top of the stack (not merely the last strings seen), and ``REDUCE``/``NEWOBJ``
may only call a global that passed the allowlist. Persistent ids (torch's tensor storages) are read to
count tensors and the bytes they declare, so caps apply before anything is allocated. The containers torch
writes (a ``torch.save`` zip, the five pickles of a legacy ``torch.save`` file) are walked here too, since
they are plain pickle layouts; the policy still decides what may appear in them.

Pure standard library (``pickletools``); the core never imports torch.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickletools
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from service.errors import ArtifactRejected

__all__ = (
    "PicklePolicy",
    "PickleSummary",
    "UnsafePickle",
    "scan_pickle_bytes",
    "scan_pickle_file",
    "scan_pickle_stream",
    "scan_torch_zip",
)

_MAX_OPS = 20_000_000
_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING"})
_STRING_OPS |= {"SHORT_BINSTRING"}
_INT_OPS = frozenset({"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"})
_PUT_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
"""First pickle of a legacy (non-zip) ``torch.save`` file; four more pickles and the raw storages follow."""


class UnsafePickle(ArtifactRejected):
    """The pickle references something its policy does not allow."""

    status = 422


@dataclass(frozen=True, slots=True)
class PicklePolicy:
    """What a pickle may reference: decided by the backend that will load it, enforced by the scan."""

    allowed_globals: frozenset[str]
    """Qualified names (``module.name``, Python 3 spelling) that ``GLOBAL``/``STACK_GLOBAL``/``INST`` may push
    and ``REDUCE``/``NEWOBJ``/``OBJ`` may call; anything else is refused by name."""
    storage_itemsize: Mapping[str, int] = field(default_factory=dict)
    """Storage-type globals accepted in persistent ids ``('storage', <type>, key, location, numel[, view])``
    -> bytes per element (to count tensors and declared bytes). Empty: any persistent id is refused. Each
    type must also be in :attr:`allowed_globals`."""
    refusal_hint: str = "which this backend does not allow"
    """Ends the refusal message after the offending name, e.g. what the uploader should save instead."""


class _Mark:
    """The MARK opcode's sentinel on the symbolic stack."""


@dataclass(frozen=True, slots=True)
class _Global:
    """A global the scan already checked against the allowlist."""

    name: str


class _Opaque:
    """Any value whose content the scan does not need (lists, dicts, tensors, ...)."""


_MARK, _OPAQUE = _Mark(), _Opaque()


@dataclass(slots=True)
class PickleSummary:
    """What a weights-only pickle declares, for the caps the guard applies before any allocation."""

    tensors: int = 0
    """Distinct tensor storages referenced (persistent ids)."""
    declared_bytes: int = 0
    """Sum of the storages' declared sizes (numel x element size)."""
    storage_bytes: dict[str, int] = field(default_factory=dict)
    """Storage key -> declared bytes (a torch zip keeps each under ``<root>/data/<key>``)."""

    def merge(self, other: PickleSummary) -> None:
        """Fold another pickle's storages in (several ``.pkl`` members, or a legacy file's pickles)."""
        for key, size in other.storage_bytes.items():
            if key not in self.storage_bytes:
                self.storage_bytes[key] = size
                self.tensors += 1
                self.declared_bytes += size

    def check_caps(self, file_size: int, *, max_tensors: int) -> None:
        """Refuse a pickle that declares more tensors than ``max_tensors`` or more bytes than the file holds.

        Call it before loading: a legacy ``torch.save`` file allocates every declared storage first.
        """
        if self.tensors > max_tensors:
            raise ArtifactRejected(f"artifact declares {self.tensors} tensors (limit {max_tensors})")
        if self.declared_bytes > file_size:
            raise ArtifactRejected(
                f"tensors declare {self.declared_bytes} bytes but the artifact has only {file_size}: refused "
                "before allocating"
            )


def _qualified(module: str, name: str, protocol: int) -> str:
    """``module.name`` as the unpickler resolves it (Python 2 names are mapped for protocols < 3)."""
    if protocol < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}"


def _check_global(qualified: str, where: str, policy: PicklePolicy) -> _Global:
    if qualified not in policy.allowed_globals:
        raise UnsafePickle(f"{where}: refused: the pickle references '{qualified[:200]}', {policy.refusal_hint}")
    return _Global(qualified)


class _Scanner:
    """Symbolic execution of one pickle: a stack and memo of placeholders, no objects are ever built."""

    def __init__(self, where: str, summary: PickleSummary, policy: PicklePolicy) -> None:
        self.where = where
        self.summary = summary
        self.policy = policy
        self.stack: list[Any] = []
        self.memo: dict[int, Any] = {}
        self.protocol = 0
        self.first: Any = None

    def pop(self) -> Any:
        if not self.stack:
            raise ValueError("stack underflow")
        return self.stack.pop()

    def pop_to_mark(self) -> list[Any]:
        items: list[Any] = []
        while True:
            item = self.pop()
            if item is _MARK:
                items.reverse()
                return items
            items.append(item)

    def checked(self, module: str, attr: str) -> _Global:
        return _check_global(_qualified(module, attr, self.protocol), self.where, self.policy)

    def callable_check(self, target: Any, opname: str) -> None:
        if not isinstance(target, _Global):
            raise UnsafePickle(f"{self.where}: refused: {opname} on a computed callable (only allowed globals)")

    def persistent_id(self, pid: Any) -> None:
        """Storage ids (torch's layout): ``('storage', StorageType, key, location, numel[, view_metadata])``."""
        if not (
            isinstance(pid, tuple)
            and len(pid) in (5, 6)
            and pid[0] == "storage"
            and isinstance(pid[1], _Global)
            and isinstance(pid[2], str)
            and isinstance(pid[4], int)
            and pid[4] >= 0
        ):
            raise UnsafePickle(f"{self.where}: refused: a persistent id that is not a tensor storage")
        itemsize = self.policy.storage_itemsize.get(pid[1].name)
        if itemsize is None:
            raise UnsafePickle(f"{self.where}: refused: '{pid[1].name}' is not a storage type")
        key = pid[2]
        if key not in self.summary.storage_bytes:
            self.summary.storage_bytes[key] = pid[4] * itemsize
            self.summary.tensors += 1
            self.summary.declared_bytes += pid[4] * itemsize

    def step(self, opcode: pickletools.OpcodeInfo, arg: Any) -> bool:  # noqa: C901, PLR0912 - one opcode table
        """Apply one opcode; True on STOP."""
        name = opcode.name
        if name in _STRING_OPS:
            self.stack.append(arg if isinstance(arg, str) else _OPAQUE)
        elif name in _INT_OPS:
            self.stack.append(int(arg) if isinstance(arg, int) and not isinstance(arg, bool) else _OPAQUE)
        elif name == "MARK":
            self.stack.append(_MARK)
        elif name in _PUT_OPS:
            if not self.stack:
                raise ValueError("PUT on an empty stack")
            self.memo[int(arg)] = self.stack[-1]
        elif name == "MEMOIZE":
            if not self.stack:
                raise ValueError("MEMOIZE on an empty stack")
            self.memo[len(self.memo)] = self.stack[-1]
        elif name in _GET_OPS:
            if int(arg) not in self.memo:
                raise ValueError(f"memo key {arg} was never stored")
            self.stack.append(self.memo[int(arg)])
        elif name == "DUP":
            if not self.stack:
                raise ValueError("DUP on an empty stack")
            self.stack.append(self.stack[-1])
        elif name == "POP":
            self.pop()
        elif name == "POP_MARK":
            self.pop_to_mark()
        elif name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            self.stack.append(self.checked(module, attr))
        elif name == "STACK_GLOBAL":
            attr, module = self.pop(), self.pop()
            if not (isinstance(module, str) and isinstance(attr, str)):
                raise UnsafePickle(f"{self.where}: refused: STACK_GLOBAL with a computed module or name")
            self.stack.append(self.checked(module, attr))
        elif name == "INST":
            module, _, attr = str(arg).partition(" ")
            self.checked(module, attr)
            self.pop_to_mark()
            self.stack.append(_OPAQUE)
        elif name == "OBJ":
            items = self.pop_to_mark()
            if not items:
                raise ValueError("OBJ without a class")
            self.callable_check(items[0], "OBJ")
            self.stack.append(_OPAQUE)
        elif name == "REDUCE":
            self.pop()  # args
            self.callable_check(self.pop(), "REDUCE")
            self.stack.append(_OPAQUE)
        elif name == "NEWOBJ":
            self.pop()
            self.callable_check(self.pop(), "NEWOBJ")
            self.stack.append(_OPAQUE)
        elif name == "NEWOBJ_EX":
            self.pop()
            self.pop()
            self.callable_check(self.pop(), "NEWOBJ_EX")
            self.stack.append(_OPAQUE)
        elif name == "TUPLE":
            self.stack.append(tuple(self.pop_to_mark()))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            count = int(name[-1])
            items = [self.pop() for _ in range(count)]
            items.reverse()
            self.stack.append(tuple(items))
        elif name == "EMPTY_TUPLE":
            self.stack.append(())
        elif name == "BINPERSID":
            self.persistent_id(self.pop())
            self.stack.append(_OPAQUE)
        elif name == "PERSID":
            raise UnsafePickle(f"{self.where}: refused: text persistent ids are not tensor storages")
        elif name in ("EXT1", "EXT2", "EXT4"):
            raise UnsafePickle(f"{self.where}: refused: the pickle uses the copyreg extension registry")
        elif name in ("NEXT_BUFFER", "READONLY_BUFFER"):
            raise UnsafePickle(f"{self.where}: refused: out-of-band buffers are not part of a weights file")
        elif name == "PROTO":
            self.protocol = int(arg)
        elif name == "FRAME":
            pass
        elif name == "STOP":
            self.first = self.pop()
            return True
        else:
            self.generic(opcode)
        return False

    def generic(self, opcode: pickletools.OpcodeInfo) -> None:
        """Any other opcode (containers, constants): pop what it consumes, push placeholders."""
        before = opcode.stack_before
        if pickletools.markobject in before:
            self.pop_to_mark()
            for _ in range(before.index(pickletools.markobject)):
                self.pop()
        else:
            for _ in before:
                self.pop()
        for _ in opcode.stack_after:
            self.stack.append(_OPAQUE)


def scan_pickle_stream(
    stream: IO[bytes], *, policy: PicklePolicy, where: str = "pickle", summary: PickleSummary | None = None
) -> Any:
    """Scan one pickle from ``stream``'s position up to and including its STOP opcode.

    Returns the symbolic top-level value (an ``int`` when the pickle is just an integer, a placeholder
    otherwise) and folds storages into ``summary``.

    Raises:
        UnsafePickle: a global outside ``policy.allowed_globals``, a call on a computed callable, a foreign
            persistent id, the extension registry, or out-of-band buffers.
        ArtifactRejected: malformed, truncated or over-long pickles.
    """
    scanner = _Scanner(where, summary if summary is not None else PickleSummary(), policy)
    ops = 0
    try:
        for opcode, arg, _pos in pickletools.genops(stream):
            ops += 1
            if ops > _MAX_OPS:
                raise UnsafePickle(f"{where}: more than {_MAX_OPS} pickle opcodes")
            if scanner.step(opcode, arg):
                return scanner.first
    except UnsafePickle:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever pickletools raises, a malformed pickle is refused
        raise ArtifactRejected(f"{where}: malformed or truncated pickle ({type(exc).__name__}: {exc})") from None
    raise ArtifactRejected(f"{where}: truncated pickle (no STOP opcode)")


def scan_pickle_bytes(data: bytes, *, policy: PicklePolicy, where: str = "pickle") -> PickleSummary:
    """Scan a single pickle held in memory; trailing bytes after its STOP opcode are refused."""
    summary = PickleSummary()
    stream = io.BytesIO(data)
    scan_pickle_stream(stream, policy=policy, where=where, summary=summary)
    if stream.tell() != len(data):
        raise ArtifactRejected(f"{where}: {len(data) - stream.tell()} unexpected bytes after the pickle")
    return summary


def scan_pickle_file(path: Path, *, policy: PicklePolicy) -> PickleSummary:
    """Scan a raw pickle artifact without reading it whole.

    A legacy ``torch.save`` file is five pickles (magic number, protocol, system info, the object, the
    storage keys) followed by raw storage bytes: all five are scanned. Any other file must be exactly one
    pickle (bytes hidden after its STOP are refused).
    """
    summary = PickleSummary()
    size = path.stat().st_size
    with path.open("rb") as fh:
        first = scan_pickle_stream(fh, policy=policy, where="pickle", summary=summary)
        if first == _TORCH_LEGACY_MAGIC:
            for part in ("protocol version", "system info", "object", "storage keys"):
                scan_pickle_stream(fh, policy=policy, where=f"torch.save {part} pickle", summary=summary)
        elif fh.tell() != size:
            raise ArtifactRejected(f"pickle: {size - fh.tell()} unexpected bytes after the pickle")
    return summary


def scan_torch_zip(
    path: Path,
    entries: Iterable[zipfile.ZipInfo] | None = None,
    *,
    policy: PicklePolicy,
    max_member_bytes: int = 256 * 1024 * 1024,
) -> PickleSummary:
    """Scan every ``.pkl`` member of a ``torch.save`` zip archive and check each storage fits its record.

    Raises ArtifactRejected when a storage's declared size exceeds the bytes the archive holds for it
    (``<root>/data/<key>``), or it has none.
    """
    summary = PickleSummary()
    with zipfile.ZipFile(path) as archive:
        infos = list(entries) if entries is not None else archive.infolist()
        records = {info.filename: info.file_size for info in infos}
        for info in infos:
            if not info.filename.endswith(".pkl"):
                continue
            if info.file_size > max_member_bytes:
                raise UnsafePickle(f"{info.filename}: pickle member of {info.file_size} bytes is over the limit")
            member = PickleSummary()
            scan_pickle_stream(io.BytesIO(archive.read(info)), policy=policy, where=info.filename, summary=member)
            root = info.filename.rsplit("/", 1)[0] + "/" if "/" in info.filename else ""
            for key, declared in member.storage_bytes.items():
                held = records.get(f"{root}data/{key}")
                if held is None:
                    raise ArtifactRejected(f"{info.filename}: tensor storage '{key[:64]}' has no data record")
                if declared > held:
                    raise ArtifactRejected(
                        f"{info.filename}: tensor storage '{key[:64]}' declares {declared} bytes "
                        f"but the archive holds {held}"
                    )
            summary.merge(member)
    return summary
