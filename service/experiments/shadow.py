"""Shadow (mirror) traffic: a share of a split's calls is copied to a shadow version after the primary answered.

The observer only draws a random number and puts the call on a bounded queue (``shadow_queue``): when the queue
is full the copy is dropped and counted, so a slow or broken shadow never slows the primary or grows memory.
A background task runs the copies through the shadow's own engine queue (several at a time, so they batch), but
only while the primary traffic leaves room (at most ``shadow_max_primary_inflight`` primary calls in flight): on
a saturated worker the copies wait, the queue fills and the surplus is dropped, so the shadow samples the
traffic of calmer moments rather than taking CPU from the primary. ``dropped`` says how partial the sample is.
A shadow's answer is never returned; the runner records per shadow version: requests, errors, latency, and
agreement with the primary (the same top class per instance for classifiers, outputs equal within 1e-6
otherwise) with the largest absolute difference seen. Only unversioned calls are mirrored: the ones the split governs.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import structlog

from service.background import cancel_and_wait
from service.experiments.accumulator import StatsAccumulator
from service.inference.dataplane import DataPlane, InferCall, InferenceEvent
from service.inference.routing_state import RoutingState
from service.observability.metrics import Metrics

__all__ = ("ShadowMirror", "agreement")

_log = structlog.get_logger(__name__)
_CONCURRENCY = 32
_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class _Copy:
    call: InferCall
    version: str
    primary: dict[str, np.ndarray]


def agreement(primary: dict[str, np.ndarray], shadow: dict[str, np.ndarray]) -> tuple[bool, float] | None:
    """(agreed, largest absolute difference) over the outputs both answered with the same shape; None when
    none are comparable (different signatures)."""
    agreed = True
    largest = 0.0
    compared = False
    for name, expected in primary.items():
        got = shadow.get(name)
        if (
            got is None
            or got.shape != expected.shape
            or expected.dtype.kind not in "fiub"
            or got.dtype.kind not in "fiub"
        ):
            continue
        compared = True
        a = expected.astype(np.float64, copy=False)
        b = got.astype(np.float64, copy=False)
        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        largest = max(largest, diff if np.isfinite(diff) else float("inf"))
        if a.ndim == 2 and a.shape[1] > 1 and a.dtype.kind == "f":
            agreed = agreed and bool(np.array_equal(np.argmax(a, axis=1), np.argmax(b, axis=1)))
        else:
            agreed = agreed and bool(np.allclose(a, b, rtol=_TOLERANCE, atol=_TOLERANCE, equal_nan=True))
    return (agreed, largest) if compared else None


class ShadowMirror:
    """Observer + background runner of shadow copies; one per worker."""

    def __init__(
        self,
        *,
        routing: RoutingState,
        stats: StatsAccumulator,
        metrics: Metrics,
        queue_size: int,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._routing = routing
        self._stats = stats
        self._metrics = metrics
        self._queue: asyncio.Queue[_Copy] = asyncio.Queue(maxsize=queue_size)
        self._rng = rng
        self._dataplane: DataPlane | None = None
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(_CONCURRENCY)

    def bind(self, dataplane: DataPlane) -> None:
        """The data plane the copies run through (built after its observers)."""
        self._dataplane = dataplane

    # -- observer: on the request path --------------------------------------------------------------
    def observe(self, event: InferenceEvent) -> None:
        call = event.call
        if event.status != 200 or call.version is not None or event.result is None:
            return
        routing = self._routing.model_routing(call.model)
        if routing is None or routing.shadow_version is None or not routing.splits:
            return
        if routing.shadow_percent < 100 and self._rng() * 100 >= routing.shadow_percent:
            return
        try:
            self._queue.put_nowait(_Copy(call, routing.shadow_version, event.result.outputs))
        except asyncio.QueueFull:
            self._stats.counters(call.model, routing.shadow_version).shadow.dropped += 1
            self._metrics.shadow_requests.labels(
                model=call.model, version=routing.shadow_version, outcome="dropped"
            ).inc()

    # -- runner: off the request path ---------------------------------------------------------------
    async def run(self) -> None:
        assert self._dataplane is not None  # noqa: S101 - bound at build time
        while True:
            copy = await self._queue.get()
            # only in the primary's spare capacity: while it is busier, copies wait (and overflow is dropped)
            await self._dataplane.calm()
            await self._slots.acquire()
            task = asyncio.get_running_loop().create_task(self._mirror(copy))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _mirror(self, copy: _Copy) -> None:
        try:
            started = time.perf_counter()
            outcome = "served"
            agreed: tuple[bool, float] | None = None
            try:
                assert self._dataplane is not None  # noqa: S101 - bound at build time
                outputs, _ = await self._dataplane.run_version(copy.call.model, copy.version, copy.call.inputs)
                agreed = agreement(copy.primary, outputs)
            except Exception as exc:  # noqa: BLE001 - a shadow's failure is a figure, never the caller's problem
                outcome = "error"
                _log.info("shadow_failed", model=copy.call.model, version=copy.version, error=type(exc).__name__)
            counters = self._stats.counters(copy.call.model, copy.version).shadow
            counters.requests += 1
            if outcome == "error":
                counters.errors += 1
            else:
                counters.latency.add((time.perf_counter() - started) * 1000.0)
            if agreed is not None:
                counters.compared += 1
                counters.agreed += agreed[0]
                counters.max_abs_diff = max(counters.max_abs_diff, agreed[1])
            self._metrics.shadow_requests.labels(model=copy.call.model, version=copy.version, outcome=outcome).inc()
        finally:
            self._slots.release()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        """Stop taking copies; those in flight get a moment to finish (their figures are then flushed)."""
        await cancel_and_wait(self._task)
        if self._running:
            await asyncio.wait(set(self._running), timeout=2.0)
