"""Give memory back to the OS: freed heap after an engine is closed, cold library pages after start-up and loads.

glibc keeps freed chunks in its arenas: after an eviction an ONNX Runtime or torch engine's weights and buffers are
free but still resident, so RSS settled 50-100 MB above what the remaining engines need (docs/benchmarks.md,
memory row). ``malloc_trim(0)`` returns the free pages at the top of every arena and, since glibc 2.8, the free
pages inside them too. It takes a few milliseconds, so it runs in a worker thread, once per retired engine.
Elsewhere (musl, macOS) there is nothing to call and this does nothing.

Shared libraries are the other part of RSS that the process no longer needs: onnxruntime's registration of every
kernel and operator schema, its graph optimisers, the import-time code of Python's extension modules run once and
stay mapped (about 30 MB of file-backed RSS for one ONNX engine, docs/benchmarks.md "Memory, round two").
:func:`release_cold_pages` asks the kernel to unmap the resident pages of read-only private mappings of ``.so``
files (``madvise(MADV_DONTNEED)``): the pages stay in the page cache, so code that runs again (the inference
path) is mapped back by a minor fault, and only what stays cold leaves the process's RSS. A mapping with any
anonymous (copy-on-write) page is left alone, so no modified byte is ever dropped. Linux only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable
from functools import cache

__all__ = ("release_cold_pages", "release_memory", "trim_heap")

_MADV_DONTNEED = 4
_SMAPS = "/proc/self/smaps"


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


@cache
def _madvise() -> Callable[[int, int, int], int] | None:
    libc = _libc()
    madvise = getattr(libc, "madvise", None) if libc is not None else None
    if madvise is None or not os.path.exists(_SMAPS):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


def trim_heap() -> bool:
    """Return free heap pages to the OS; whether anything could be asked to (glibc only)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def _is_library(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return path.startswith("/") and not path.startswith("/dev/") and (name.endswith(".so") or ".so." in name)


def _cold_candidates() -> list[tuple[int, int, int]]:
    """``(start, end, rss_kb)`` of every read-only private ``.so`` mapping with resident pages and no anonymous ones."""
    found: list[tuple[int, int, int]] = []
    current: list[int] | None = None  # start, end, rss, anonymous; None: not a candidate
    with open(_SMAPS) as smaps:
        for line in smaps:
            head, _, rest = line.partition(" ")
            if not head.endswith(":"):  # a mapping's header: "start-end perms offset dev inode [path]"
                if current is not None and current[2] > 0 and current[3] == 0:
                    found.append((current[0], current[1], current[2]))
                fields = rest.split(None, 4)
                perms, path = fields[0], fields[4].strip() if len(fields) > 4 else ""
                start, end = head.split("-")
                is_candidate = perms[1] == "-" and perms[3] == "p" and _is_library(path)
                current = [int(start, 16), int(end, 16), 0, 0] if is_candidate else None
            elif current is not None and head in ("Rss:", "Anonymous:"):
                current[2 if head == "Rss:" else 3] = int(rest.split()[0])
    if current is not None and current[2] > 0 and current[3] == 0:
        found.append((current[0], current[1], current[2]))
    return found


def release_cold_pages() -> int:
    """Unmap the resident pages of read-only private mappings of shared libraries (they stay in the page cache;
    the next access maps a page back); the KiB that were resident in them. 0 where unsupported."""
    madvise = _madvise()
    if madvise is None:
        return 0
    released = 0
    try:
        candidates = _cold_candidates()
    except (OSError, ValueError, IndexError):
        return 0
    for start, end, rss_kb in candidates:
        if madvise(start, end - start, _MADV_DONTNEED) == 0:
            released += rss_kb
    return released


def release_memory(*, cold_pages: bool) -> int:
    """After start-up or a load: ``malloc_trim``, then (``cold_pages``) :func:`release_cold_pages`; its KiB."""
    trim_heap()
    return release_cold_pages() if cold_pages else 0
