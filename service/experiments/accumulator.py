"""This worker's share of the fleet-wide statistics: counters per (model, version, time bucket), flushed.

Observers add to the bucket of the current minute on the event loop (a dictionary lookup and a few additions
per call); the flusher (:mod:`service.experiments.flusher`) writes every bucket that changed since the last
flush as this worker's row in the registry database, overwriting the row with the bucket's running totals, so
a write that is retried or repeated can never count twice. Buckets older than the current one are final once
written and leave memory. What the fleet saw is the sum of every worker's rows (:mod:`.fleet`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from service.experiments.counters import VersionCounters

__all__ = ("BucketKey", "StatsAccumulator")


class BucketKey(NamedTuple):
    """A tuple, so that the per-call dictionary lookups hash and compare in C."""

    model: str
    version: str
    start: int
    """Epoch seconds at which the bucket begins (a multiple of the bucket length)."""


class StatsAccumulator:
    """Counters of one worker process; used from the event loop only (no locks)."""

    def __init__(self, *, bucket_s: int = 60, clock: Callable[[], float] = time.time) -> None:
        self.bucket_s = bucket_s
        self._clock = clock
        self._buckets: dict[BucketKey, VersionCounters] = {}
        self._dirty: dict[BucketKey, int] = {}
        """Buckets changed since their last flush, each with a change stamp (how many times it was handed out)."""
        self._current: dict[tuple[str, str], tuple[int, BucketKey, VersionCounters]] = {}
        """Per (model, version): the current bucket's start, key and counters (the per-call lookup is one get)."""

    def counters(self, model: str, version: str) -> VersionCounters:
        """The current bucket's counters of one version, to add to (marks the bucket for the next flush)."""
        now = self._clock()
        current = self._current.get((model, version))
        if current is None or not current[0] <= now < current[0] + self.bucket_s:
            start = int(now) - int(now) % self.bucket_s
            key = BucketKey(model, version, start)
            counters = self._buckets.get(key)
            if counters is None:
                counters = self._buckets[key] = VersionCounters()
            current = self._current[(model, version)] = (start, key, counters)
        key = current[1]
        self._dirty[key] = self._dirty.get(key, 0) + 1
        return current[2]

    def pending(self) -> list[tuple[BucketKey, VersionCounters, int]]:
        """Every bucket changed since it was last flushed: its running totals (a copy: safe to write while
        observers keep adding) and the change stamp to hand back to :meth:`flushed`."""
        out = []
        for key, stamp in self._dirty.items():
            copy = VersionCounters()
            copy.merge(self._buckets[key])
            out.append((key, copy, stamp))
        return out

    def flushed(self, written: list[tuple[BucketKey, int]]) -> None:
        """These buckets are durable as of the stamps :meth:`pending` gave; closed, unchanged ones leave memory.

        A bucket that changed while it was being written keeps its newer stamp and is written again next time.
        """
        now = int(self._clock())
        current = now - now % self.bucket_s
        for key, stamp in written:
            if self._dirty.get(key) != stamp:
                continue
            del self._dirty[key]
            if key.start < current:
                self._buckets.pop(key, None)
                cached = self._current.get((key.model, key.version))
                if cached is not None and cached[1] == key:
                    del self._current[(key.model, key.version)]

    def totals(self, model: str) -> dict[str, VersionCounters]:
        """This worker's counters still in memory per version (the current bucket and unflushed ones)."""
        out: dict[str, VersionCounters] = {}
        for key, counters in self._buckets.items():
            if key.model == model:
                out.setdefault(key.version, VersionCounters()).merge(counters)
        return out
