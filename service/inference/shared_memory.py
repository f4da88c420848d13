"""Triton's system shared-memory extension: the regions one worker process has registered, and tensor I/O on them.

A client creates a POSIX shared-memory object (``/dev/shm/<key>``), registers a region of it by name (key,
offset, byte size), then names the region in an infer request's input or output ``parameters`` instead of sending
the bytes. Protocol-neutral: the HTTP and gRPC edges call :class:`SharedMemoryRegistry` the same way.

Safety, because the object belongs to the client, which may shrink or unlink it at any moment:

* Objects are opened read/write by key under ``/dev/shm`` only: one leading ``/`` is allowed (POSIX names), any
  other ``/``, ``..`` or unusual character is refused; ``O_NOFOLLOW`` refuses a symbolic link and the object must
  be a regular file. The region must lie within the object's size at registration.
* The server never maps the object. Inputs are copied out with one ``preadv`` into the server's own array when
  the request is decoded, outputs written with ``pwrite`` when the response is encoded. A memory map read later
  by the engine (after queueing and batching) would turn a client's ``ftruncate`` into a SIGBUS that kills the
  worker; ``pread`` of a shrunk object is a short read and ``pwrite`` extends it, so no client action can crash
  the server. The copy costs about what reading the same bytes from a socket does.
* Every use checks ``fstat`` first: an unlinked object (``st_nlink`` 0) or one now smaller than the region is a
  clear InvalidInput, as are tensor offsets and sizes outside the region.
* Bounded: at most ``max_regions`` regions and ``max_bytes`` registered bytes per worker (one descriptor each),
  and one request copies at most ``max_bytes`` out of them, however many inputs name the same region.

All methods run on the worker's event loop (decode, encode and the extension's routes all do), so a region that
is unregistered while a request that named it is in flight is seen as closed, never as a reused descriptor.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from service.errors import InvalidInput, NotFound

__all__ = ("SHM_DIR", "RegionLookup", "RegionStatus", "SharedMemoryRegion", "SharedMemoryRegistry", "ShmTarget")

SHM_DIR = Path("/dev/shm")  # noqa: S108 - POSIX shared-memory objects live here on Linux
"""Where ``shm_open`` keeps its objects on Linux; keys are names inside it."""
_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")
_NAME_MAX = 256


@dataclass(frozen=True, slots=True)
class RegionStatus:
    """One registered region as the status calls report it."""

    name: str
    key: str
    offset: int
    byte_size: int


@dataclass(slots=True)
class SharedMemoryRegion:
    """A registered region: ``byte_size`` bytes at ``offset`` of the object ``key``, through an open descriptor."""

    name: str
    key: str
    offset: int
    byte_size: int
    fd: int
    closed: bool = field(default=False)

    def _check(self) -> None:
        """Refuse a region that was unregistered, or whose object was unlinked or shrank since registration."""
        if self.closed:
            raise InvalidInput(f"shared memory region '{self.name}' was unregistered while the request was served")
        info = os.fstat(self.fd)
        if info.st_nlink == 0:
            raise InvalidInput(
                f"shared memory region '{self.name}': its object '{self.key}' was unlinked; create it and register "
                "the region again"
            )
        if info.st_size < self.offset + self.byte_size:
            raise InvalidInput(
                f"shared memory region '{self.name}': its object '{self.key}' shrank to {info.st_size} bytes, smaller "
                f"than the registered region (offset {self.offset} + byte_size {self.byte_size})"
            )

    def bounds(self, what: str, offset: int, size: int) -> None:
        """InvalidInput unless ``size`` bytes at ``offset`` lie inside the region (``what`` names the tensor)."""
        if offset < 0 or size < 0 or offset + size > self.byte_size:
            raise InvalidInput(
                f"{what}: shared_memory_offset {offset} + shared_memory_byte_size {size} is out of bounds of "
                f"shared memory region '{self.name}' ({self.byte_size} bytes)"
            )

    def read(self, what: str, offset: int, size: int) -> memoryview:
        """``size`` bytes at ``offset`` in the region, copied into a new buffer (numpy-allocated, so aligned)."""
        self.bounds(what, offset, size)
        self._check()
        view = memoryview(np.empty(size, dtype=np.uint8))  # type: ignore[arg-type]
        got = os.preadv(self.fd, [view], self.offset + offset) if size else 0
        if got != size:  # shrank between fstat and the read
            raise InvalidInput(f"{what}: shared memory region '{self.name}' holds only {got} of {size} bytes")
        return view

    def write(self, offset: int, payload: memoryview | bytes) -> None:
        """Write ``payload`` at ``offset`` in the region (bounds checked by :meth:`ShmTarget.check`)."""
        self._check()
        view = memoryview(payload).cast("B")
        position = self.offset + offset
        while view:
            written = os.pwrite(self.fd, view, position)
            view = view[written:]
            position += written


@dataclass(frozen=True, slots=True)
class ShmTarget:
    """Where an output goes: ``byte_size`` bytes at ``offset`` of a registered region."""

    region: SharedMemoryRegion
    offset: int
    byte_size: int

    def check(self, what: str, size: int) -> None:
        """InvalidInput unless ``size`` output bytes fit, before anything is written."""
        self.region.bounds(what, self.offset, self.byte_size)
        if size > self.byte_size:
            raise InvalidInput(
                f"{what}: the result needs {size} bytes but shared_memory_byte_size is {self.byte_size} (region "
                f"'{self.region.name}'); give the output at least {size} bytes"
            )
        self.region._check()


class RegionLookup(Protocol):
    """The regions one request may name (``service.security.shared_memory_access`` makes one per request); called
    by the codecs only when a tensor names a region."""

    def region(self, what: str, name: str) -> SharedMemoryRegion:
        """The region ``name`` for the tensor ``what``, or the error that refuses this caller or that name."""
        ...

    def charge(self, what: str, size: int) -> None:
        """Count ``size`` more bytes this request copies out of regions; InvalidInput past the per-request cap."""
        ...


def _object_path(key: str) -> Path:
    name = key[1:] if key.startswith("/") else key
    if not _KEY.match(name) or ".." in name:
        raise InvalidInput(
            f"invalid shared memory key '{key[:64]}': expected a POSIX shared-memory name ('/name', at most 255 "
            "letters, digits, '_', '-' or '.', no other '/' and no '..')"
        )
    return SHM_DIR / name


class SharedMemoryRegistry:
    """The regions this worker process has registered, by name (see the module docstring)."""

    def __init__(self, *, max_regions: int, max_bytes: int, directory: Path = SHM_DIR) -> None:
        self._max_regions = max_regions
        self._max_bytes = max_bytes
        self._directory = directory
        self._regions: dict[str, SharedMemoryRegion] = {}

    @property
    def max_bytes(self) -> int:
        """Bytes registered at most, all regions together; also what one request may copy out of them."""
        return self._max_bytes

    @property
    def registered_bytes(self) -> int:
        return sum(region.byte_size for region in self._regions.values())

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        """Open the object ``key`` and register ``byte_size`` bytes at ``offset`` of it as ``name``.

        Raises InvalidInput naming the problem: a name already registered, a bad key, an object that does not
        exist or is not a regular file, a region outside it, or the bounds of this worker.
        """
        if not name or len(name) > _NAME_MAX:
            raise InvalidInput(f"a shared memory region name must have 1 to {_NAME_MAX} characters")
        if name in self._regions:
            raise InvalidInput(f"shared memory region '{name}' already in manager")
        path = self._directory / _object_path(key).name
        if offset < 0 or byte_size <= 0:
            raise InvalidInput(
                f"shared memory region '{name}': offset must be >= 0 and byte_size > 0 (got {offset}, {byte_size})"
            )
        if len(self._regions) >= self._max_regions:
            raise InvalidInput(
                f"cannot register shared memory region '{name}': {len(self._regions)} regions are registered, the "
                f"limit (MODELPORT_SHM_MAX_REGIONS) is {self._max_regions}; unregister some first"
            )
        if self.registered_bytes + byte_size > self._max_bytes:
            raise InvalidInput(
                f"cannot register shared memory region '{name}': {self.registered_bytes} + {byte_size} bytes would "
                f"pass the limit of {self._max_bytes} registered bytes (MODELPORT_SHM_MAX_BYTES)"
            )
        fd = self._open(name, key, path)
        try:
            size = os.fstat(fd).st_size
            if offset + byte_size > size:
                raise InvalidInput(
                    f"shared memory region '{name}': offset {offset} + byte_size {byte_size} is beyond the end of "
                    f"object '{key}' ({size} bytes)"
                )
        except BaseException:
            os.close(fd)
            raise
        self._regions[name] = SharedMemoryRegion(name, key, offset, byte_size, fd)

    @staticmethod
    def _open(name: str, key: str, path: Path) -> int:
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            raise InvalidInput(f"Unable to open shared memory region: '{key}' does not exist") from None
        except OSError as exc:
            raise InvalidInput(f"Unable to open shared memory region '{name}' ('{key}'): {exc.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise InvalidInput(f"Unable to open shared memory region '{name}': '{key}' is not a shared memory object")
        return fd

    def unregister(self, name: str) -> None:
        """Drop ``name`` (an unknown name is not an error, as in Triton); empty: every region."""
        names = [name] if name else list(self._regions)
        for each in names:
            region = self._regions.pop(each, None)
            if region is not None:
                region.closed = True
                os.close(region.fd)

    def status(self, name: str) -> list[RegionStatus]:
        """Every region (``name`` empty) or the one named; NotFound for an unknown name."""
        if name:
            region = self._regions.get(name)
            if region is None:
                raise NotFound(f"Unable to find system shared memory region: '{name}'")
            regions = [region]
        else:
            regions = list(self._regions.values())
        return [RegionStatus(r.name, r.key, r.offset, r.byte_size) for r in regions]

    def region(self, what: str, name: str) -> SharedMemoryRegion:
        """The region an input or output (``what``) names; InvalidInput when none is registered by that name."""
        region = self._regions.get(name)
        if region is None:
            raise InvalidInput(f"{what}: Unable to find system shared memory region: '{name[:_NAME_MAX]}'")
        return region

    def close(self) -> None:
        """Unregister everything (worker shutdown)."""
        self.unregister("")
