"""Predictions waiting to be written to the registry database, so that outcomes can find them later.

The inference path only appends to a bounded in-memory queue (no database write per prediction); the flusher
writes the queue in batches every ``prediction_flush_interval_s``. When the database is slow or away the
queue fills up to ``prediction_log_max_pending`` and further predictions are dropped and counted (their
outcomes will get 404) rather than growing memory or slowing inference.
"""

from __future__ import annotations

import time
from collections import deque

from registry_db.repository.experiments import LoggedPrediction, request_key
from service.experiments.predictions import Prediction

__all__ = ("PredictionLog",)

_Pending = tuple[str, str, str, float, list[Prediction]]
"""model, request id, version, epoch seconds, prediction: a plain tuple on the request path (a frozen dataclass
costs several times as much to build); :class:`LoggedPrediction` is made when the flusher takes a batch."""


class PredictionLog:
    """This worker's unwritten predictions; used from the event loop only."""

    def __init__(self, *, max_pending: int) -> None:
        self._pending: deque[_Pending] = deque()
        self._keys: set[tuple[str, str]] = set()
        self._max_pending = max_pending
        self.dropped = 0
        """Predictions refused because the queue was full (since start)."""
        self.written = 0

    def append(self, model: str, request_id: str, version: str, prediction: list[Prediction]) -> None:
        if len(self._pending) >= self._max_pending:
            self.dropped += 1
            return
        self._pending.append((model, request_id, version, time.time(), prediction))
        self._keys.add((model, request_key(request_id)))

    def __len__(self) -> int:
        return len(self._pending)

    def holds(self, model: str, request_id: str) -> bool:
        """Whether a prediction for this call is still waiting to be written by this worker."""
        return (model, request_key(request_id)) in self._keys

    def take(self, limit: int) -> list[LoggedPrediction]:
        """The oldest ``limit`` pending predictions (hand them back with :meth:`restore` if the write fails)."""
        pending = self._pending
        batch = []
        for _ in range(min(limit, len(pending))):
            model, request_id, version, at, prediction = pending.popleft()
            batch.append(LoggedPrediction(model, request_id, version, at, prediction))
        return batch

    def written_out(self, batch: list[LoggedPrediction]) -> None:
        for entry in batch:
            self._keys.discard((entry.model, request_key(entry.request_id)))
        self.written += len(batch)

    def restore(self, batch: list[LoggedPrediction]) -> None:
        """Put a batch whose write failed back at the front (oldest first), dropping what no longer fits."""
        room = max(0, self._max_pending - len(self._pending))
        keep = batch[:room]
        for entry in batch[room:]:
            self._keys.discard((entry.model, request_key(entry.request_id)))
        self.dropped += len(batch) - len(keep)
        self._pending.extendleft((e.model, e.request_id, e.version, e.at, e.prediction) for e in reversed(keep))
