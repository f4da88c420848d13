"""Keep Python's cyclic garbage collector off the request path of a long-running server.

A started server holds ~170k GC-tracked objects (Litestar, SQLAlchemy, pydantic, the plugins) that live as long as
the process. With CPython's default thresholds (700, 10, 10) a worker at ~4k requests/s ran ~110 gen-0 and ~3
full collections a second, and every full collection walked all of them: 65-100 ms pauses, the p99 of every load,
and ~8 % of the worker's CPU (docs/benchmarks.md, "The garbage collector"). ``gc.freeze()`` once the server is
ready moves everything alive into a permanent generation that collections skip (as Instagram does after fork), and
a larger gen-0 threshold runs the young collection less often: it costs about the same per object, so fewer runs
mean less fixed cost while the in-flight requests' young objects are the same.

Frozen objects are still freed by reference counting; only cycles among them would outlive their use, so
:func:`release` unfreezes them when the server stops (tests run many apps in one process).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

__all__ = ("CollectorTuning", "tune", "release")


@dataclass(frozen=True, slots=True)
class CollectorTuning:
    """What :func:`tune` changed, so :func:`release` can put it back."""

    thresholds: tuple[int, int, int]
    frozen: int


def tune(*, freeze: bool, gen0_threshold: int) -> CollectorTuning:
    """Collect once, freeze what survives (``freeze``), and raise gen 0's threshold (``gen0_threshold``; 0 keeps
    the interpreter's). Call when start-up has built everything long-lived."""
    before = gc.get_threshold()
    frozen = 0
    if freeze and gc.isenabled():
        gc.collect()
        gc.freeze()
        frozen = gc.get_freeze_count()
    if gen0_threshold > 0:
        gc.set_threshold(gen0_threshold, before[1], before[2])
    return CollectorTuning(thresholds=before, frozen=frozen)


def release(tuning: CollectorTuning) -> None:
    """Undo :func:`tune`: the frozen objects become collectable again, the thresholds are the earlier ones."""
    if tuning.frozen:
        gc.unfreeze()
    gc.set_threshold(*tuning.thresholds)
