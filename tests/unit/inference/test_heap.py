"""Heap trimming after an engine is retired: on glibc it really gives freed pages back."""

from __future__ import annotations

import ctypes
import platform

import pytest

from service.inference.heap import trim_heap


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_small_allocations_are_returned_to_the_os() -> None:
    # many small blocks (below the mmap threshold) live in the arena: freeing them keeps the pages resident
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(4096) for _ in range(50_000)]  # ~200 MB
    for block in blocks:
        ctypes.memset(block, 1, 4096)
    keep = libc.malloc(64)  # above them all, so the arena's top cannot shrink by itself
    for block in blocks:
        libc.free(block)
    before = _rss_kb()
    assert trim_heap()
    after = _rss_kb()
    libc.free(keep)
    assert before - after > 100_000, (before, after)  # most of the ~200 MB came back
