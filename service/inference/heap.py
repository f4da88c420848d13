"""Give freed heap memory back to the OS after an engine is closed.

glibc keeps freed chunks in its arenas: after an eviction an ONNX Runtime or torch engine's weights and buffers are
free but still resident, so RSS settled 50-100 MB above what the remaining engines need (docs/benchmarks.md,
memory row). ``malloc_trim(0)`` returns the free pages at the top of every arena and, since glibc 2.8, the free
pages inside them too. It takes a few milliseconds, so it runs in a worker thread, once per retired engine.
Elsewhere (musl, macOS) there is nothing to call and this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from functools import cache

__all__ = ("trim_heap",)


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def trim_heap() -> bool:
    """Return free heap pages to the OS; whether anything could be asked to (glibc only)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
