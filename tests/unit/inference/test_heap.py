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


def _rss_file_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssFile"))


@pytest.mark.skipif(platform.system() != "Linux", reason="madvise and /proc/self/smaps are Linux's")
def test_cold_library_pages_leave_rss_and_come_back_on_use() -> None:
    import numpy as np

    from service.inference.heap import _cold_candidates, release_cold_pages

    np.linalg.svd(np.eye(64))  # touch some of numpy's and OpenBLAS's code
    candidates = _cold_candidates()
    assert candidates and all(rss > 0 for _start, _end, rss in candidates)
    before = _rss_file_kb()
    released = release_cold_pages()
    after = _rss_file_kb()
    assert released > 0 and before - after > released // 2, (before, after, released)
    # the code still runs, from the page cache, and what it needs is resident again
    u, s, vt = np.linalg.svd(np.eye(64))
    np.testing.assert_allclose(s, np.ones(64))
    assert _rss_file_kb() > after


@pytest.mark.skipif(platform.system() != "Linux", reason="madvise and /proc/self/smaps are Linux's")
def test_only_read_only_private_library_mappings_are_candidates() -> None:
    from service.inference.heap import _cold_candidates

    with open("/proc/self/maps") as maps:
        mappings = {int(line.split("-", 1)[0], 16): line.split() for line in maps}
    for start, _end, _rss in _cold_candidates():
        perms, path = mappings[start][1], mappings[start][-1]
        assert perms[1] == "-" and perms[3] == "p", mappings[start]  # never writable, never shared
        assert ".so" in path.rsplit("/", 1)[-1], mappings[start]
