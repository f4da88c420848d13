"""Per-version statistics for comparing A/B arms: requests, errors, latency percentiles, predictions.

Kept in memory per worker (bounded reservoir of recent latencies); ``/metrics`` carries the same data for
Prometheus to aggregate across replicas (see docs/monitoring.md for the PromQL).
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ("VersionStats", "StatsBook")

_RESERVOIR = 4096


@dataclass(slots=True)
class VersionStats:
    """Running figures for one model version on this worker."""

    requests: int = 0
    """Calls the version ran or failed on its own (served, or a 5xx that is not backpressure)."""
    errors: int = 0
    rejected: int = 0
    """Calls refused before the version ran them (queue full, queue timeout, not ready): load, not quality."""
    client_errors: int = 0
    """Calls refused for the caller's mistake after routing (wrong shape, dtype, output name): say nothing."""
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_RESERVOIR))
    predictions: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        """Counts, error rate, latency p50/p95/p99 (ms) over the recent window, prediction distribution."""
        lat = np.fromiter(self.latencies_ms, dtype=np.float64)
        pct = np.percentile(lat, [50, 95, 99]).round(3).tolist() if lat.size else [None, None, None]
        total_preds = sum(self.predictions.values())
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.errors / self.requests, 6) if self.requests else 0.0,
            "rejected": self.rejected,
            "client_errors": self.client_errors,
            "latency_ms": {"p50": pct[0], "p95": pct[1], "p99": pct[2], "window": int(lat.size)},
            "predictions": {
                label: {"count": n, "share": round(n / total_preds, 6)}
                for label, n in sorted(self.predictions.items(), key=lambda kv: (-kv[1], kv[0]))
            },
        }


class StatsBook:
    """Thread-safe map (model, version) -> VersionStats."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: dict[tuple[str, str], VersionStats] = {}

    def record(
        self, model: str, version: str, *, latency_ms: float, error: bool, predictions: list[str] | None = None
    ) -> None:
        """Account one request (called once per request, after the response is built)."""
        with self._lock:
            stats = self._stats.get((model, version))
            if stats is None:
                stats = self._stats[(model, version)] = VersionStats()
            stats.requests += 1
            if error:
                stats.errors += 1
            else:
                stats.latencies_ms.append(latency_ms)
            if predictions:
                stats.predictions.update(predictions)

    def record_refusal(self, model: str, version: str, *, overload: bool) -> None:
        """Account a call the version never ran: backpressure (``overload``) or the caller's mistake."""
        with self._lock:
            stats = self._stats.get((model, version))
            if stats is None:
                stats = self._stats[(model, version)] = VersionStats()
            if overload:
                stats.rejected += 1
            else:
                stats.client_errors += 1

    def for_model(self, model: str) -> dict[str, dict[str, Any]]:
        """Summaries of every version of ``model`` seen by this worker."""
        with self._lock:
            return {v: s.summary() for (m, v), s in sorted(self._stats.items()) if m == model}
