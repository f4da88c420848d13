"""Writes this worker's statistics and pending predictions to the registry database, in the background.

Predictions are written every ``prediction_flush_interval_s`` (so an outcome sent to another replica finds
its prediction within about that long), statistics every ``stats_flush_interval_s``, and old rows are pruned
every few minutes by whichever worker gets there (the deletes are idempotent). A failed write keeps the data
in memory for the next attempt; a stop flushes once more, so a clean shutdown loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta

import structlog

from registry_db.errors import ModelportError
from registry_db.repository import Registry
from service.background import cancel_and_wait
from service.experiments.accumulator import StatsAccumulator
from service.experiments.prediction_log import PredictionLog
from service.observability.metrics import Metrics

__all__ = ("ExperimentsFlusher",)

_log = structlog.get_logger(__name__)
_BATCH = 2000
_PRUNE_EVERY_S = 600.0


class ExperimentsFlusher:
    """One per worker; started and stopped with the runtime."""

    def __init__(
        self,
        *,
        registry: Registry,
        stats: StatsAccumulator,
        predictions: PredictionLog,
        metrics: Metrics,
        worker: str,
        stats_interval_s: float,
        predictions_interval_s: float,
        retention_s: int,
        feedback_window_s: int,
    ) -> None:
        self._registry = registry
        self._stats = stats
        self._predictions = predictions
        self._metrics = metrics
        self.worker = worker
        self._stats_interval_s = stats_interval_s
        self._predictions_interval_s = predictions_interval_s
        self._retention_s = retention_s
        self._feedback_window_s = feedback_window_s
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._last_stats = 0.0
        self._last_prune = 0.0

    @property
    def predictions_interval_s(self) -> float:
        return self._predictions_interval_s

    async def flush_stats(self) -> bool:
        """Write every changed bucket now; whether it worked."""
        async with self._lock:
            pending = self._stats.pending()
            if not pending:
                return True
            rows = [(k.model, k.version, k.start, c.to_json()) for k, c, _ in pending]
            try:
                await self._registry.experiments.write_buckets(self.worker, self._stats.bucket_s, rows)
            except ModelportError as exc:
                _log.warning("stats_flush_failed", error=str(exc), buckets=len(rows))
                self._metrics.experiment_flush_failures.labels(kind="stats").inc()
                return False
            self._stats.flushed([(k, stamp) for k, _, stamp in pending])
            return True

    async def flush_predictions(self) -> bool:
        """Write every pending prediction now; whether it worked."""
        async with self._lock:
            while len(self._predictions):
                batch = self._predictions.take(_BATCH)
                try:
                    await self._registry.experiments.log_predictions(batch)
                except ModelportError as exc:
                    self._predictions.restore(batch)
                    _log.warning("prediction_log_flush_failed", error=str(exc), pending=len(self._predictions))
                    self._metrics.experiment_flush_failures.labels(kind="predictions").inc()
                    return False
                self._predictions.written_out(batch)
            self._metrics.prediction_log_dropped.set(self._predictions.dropped)
            return True

    async def prune(self) -> None:
        now = time.time()
        stats_before = int(now) - self._retention_s
        predictions_before = datetime.now(UTC) - timedelta(seconds=self._feedback_window_s)
        try:
            buckets, predictions = await self._registry.experiments.prune(
                stats_before=stats_before, predictions_before=predictions_before
            )
        except ModelportError as exc:
            _log.warning("experiments_prune_failed", error=str(exc))
            return
        if buckets or predictions:
            _log.info("experiments_pruned", stats_buckets=buckets, predictions=predictions)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._predictions_interval_s)
            try:
                await self.flush_predictions()
                now = time.monotonic()
                if now - self._last_stats >= self._stats_interval_s:
                    self._last_stats = now
                    await self.flush_stats()
                if now - self._last_prune >= _PRUNE_EVERY_S:
                    self._last_prune = now
                    await self.prune()
            except Exception:  # noqa: BLE001 - the flusher must survive anything
                _log.exception("experiments_flush_crashed")

    def start(self) -> None:
        self._last_stats = self._last_prune = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        """Stop the loop and write what is left (bounded: a database that is away does not hold shutdown)."""
        await cancel_and_wait(self._task)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._final_flush(), timeout=10.0)

    async def _final_flush(self) -> None:
        await self.flush_predictions()
        await self.flush_stats()
