"""Mergeable per-version counters: what each worker accumulates and the database sums across the fleet.

Every figure is a sufficient statistic that adds up across workers, replicas and time buckets (counts, sums,
sums of squares, a fixed log-bucket latency histogram, label counts, a running maximum), so the fleet-wide view
is an exact sum of what each worker saw, never an average of averages. Percentiles come from the merged
histogram: bucket bounds grow by a factor 2^(1/8), so a reported percentile is within 4.5 % of the true one.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ("MAX_LABELS", "OTHER_LABEL", "LatencyHistogram", "ShadowCounters", "VersionCounters")

_FLOOR_MS = 0.01
_STEPS_PER_DOUBLING = 8
_MAX_INDEX = 8 * 27  # 0.01 ms * 2**27 = 22 minutes: longer calls share the last bucket
MAX_LABELS = 64
"""Distinct predicted labels kept per version and bucket; the rest are counted as :data:`OTHER_LABEL`."""
OTHER_LABEL = "__other__"


def _bucket_of(ms: float) -> int:
    if ms <= _FLOOR_MS:
        return 0
    return min(_MAX_INDEX, math.ceil(_STEPS_PER_DOUBLING * math.log2(ms / _FLOOR_MS)))


def _bucket_mid_ms(index: int) -> float:
    """The geometric middle of a bucket (its bounds are ``floor * 2**((i-1)/8)`` and ``floor * 2**(i/8)``)."""
    if index == 0:
        return _FLOOR_MS
    return float(_FLOOR_MS * 2 ** ((index - 0.5) / _STEPS_PER_DOUBLING))


@dataclass(slots=True)
class LatencyHistogram:
    """Counts of latencies per log bucket, plus the sum and sum of squares (for means and their variance)."""

    buckets: Counter[int] = field(default_factory=Counter)
    count: int = 0
    total_ms: float = 0.0
    total_sq_ms: float = 0.0

    def add(self, ms: float) -> None:
        # _bucket_of, inlined: this runs for every served call
        index = 0 if ms <= _FLOOR_MS else min(_MAX_INDEX, math.ceil(_STEPS_PER_DOUBLING * math.log2(ms / _FLOOR_MS)))
        self.buckets[index] += 1
        self.count += 1
        self.total_ms += ms
        self.total_sq_ms += ms * ms

    def merge(self, other: LatencyHistogram) -> None:
        self.buckets.update(other.buckets)
        self.count += other.count
        self.total_ms += other.total_ms
        self.total_sq_ms += other.total_sq_ms

    def log_moments(self) -> tuple[int, float, float]:
        """``(n, sum ln ms, sum (ln ms)^2)`` with each call at its bucket's geometric middle: what the always-valid
        comparison of geometric means (a latency ratio) needs."""
        total = total_sq = 0.0
        for index, n in self.buckets.items():
            log_ms = math.log(_bucket_mid_ms(index))
            total += n * log_ms
            total_sq += n * log_ms * log_ms
        return self.count, total, total_sq

    def percentiles(self, *quantiles: float) -> list[float | None]:
        """Each quantile in ``[0, 1]`` as milliseconds (None when empty)."""
        if not self.count:
            return [None for _ in quantiles]
        ordered = sorted(self.buckets.items())
        out: list[float | None] = []
        for q in quantiles:
            rank = max(1, math.ceil(q * self.count))
            seen = 0
            for index, n in ordered:
                seen += n
                if seen >= rank:
                    out.append(round(_bucket_mid_ms(index), 3))
                    break
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "b": {str(k): v for k, v in self.buckets.items()},
            "n": self.count,
            "s": self.total_ms,
            "ss": self.total_sq_ms,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LatencyHistogram:
        return cls(
            Counter({int(k): int(v) for k, v in data.get("b", {}).items()}),
            int(data.get("n", 0)),
            float(data.get("s", 0.0)),
            float(data.get("ss", 0.0)),
        )


@dataclass(slots=True)
class ShadowCounters:
    """What a shadow version did with the copies it was sent, and how far it agreed with the primary."""

    requests: int = 0
    errors: int = 0
    dropped: int = 0
    """Copies never run because the shadow queue was full (the primary is never slowed for a shadow)."""
    compared: int = 0
    agreed: int = 0
    """Compared calls whose top class (classification) matched the primary's, or whose outputs matched within
    1e-6 (regression)."""
    max_abs_diff: float = 0.0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def merge(self, other: ShadowCounters) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.dropped += other.dropped
        self.compared += other.compared
        self.agreed += other.agreed
        self.max_abs_diff = max(self.max_abs_diff, other.max_abs_diff)
        self.latency.merge(other.latency)

    @property
    def empty(self) -> bool:
        return not (self.requests or self.dropped)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "dropped": self.dropped,
            "compared": self.compared,
            "agreed": self.agreed,
            "max_abs_diff": self.max_abs_diff,
            "latency": self.latency.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShadowCounters:
        return cls(
            int(data.get("requests", 0)),
            int(data.get("errors", 0)),
            int(data.get("dropped", 0)),
            int(data.get("compared", 0)),
            int(data.get("agreed", 0)),
            float(data.get("max_abs_diff", 0.0)),
            LatencyHistogram.from_json(data.get("latency", {})),
        )

    def summary(self) -> dict[str, Any]:
        p50, p99 = self.latency.percentiles(0.5, 0.99)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.errors / self.requests, 6) if self.requests else None,
            "dropped": self.dropped,
            "compared": self.compared,
            "agreement": round(self.agreed / self.compared, 6) if self.compared else None,
            "max_abs_diff": round(self.max_abs_diff, 9) if self.compared else None,
            "latency_ms": {"p50": p50, "p99": p99},
        }


@dataclass(slots=True)
class VersionCounters:
    """One version's figures over one time bucket (or any merge of buckets, workers and replicas).

    ``requests`` and ``errors`` are what the version ran or failed on its own; ``rejected`` (backpressure) and
    ``client_errors`` (the caller's mistakes after routing) are counted apart so that a busy arm, or one that
    got bad inputs, is not condemned for it.
    """

    requests: int = 0
    errors: int = 0
    rejected: int = 0
    client_errors: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    labels: Counter[str] = field(default_factory=Counter)
    shadow: ShadowCounters = field(default_factory=ShadowCounters)

    def add_label(self, label: str) -> None:
        if label in self.labels or len(self.labels) < MAX_LABELS:
            self.labels[label] += 1
        else:
            self.labels[OTHER_LABEL] += 1

    def merge(self, other: VersionCounters) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.rejected += other.rejected
        self.client_errors += other.client_errors
        self.latency.merge(other.latency)
        self.labels.update(other.labels)
        self.shadow.merge(other.shadow)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "requests": self.requests,
            "errors": self.errors,
            "rejected": self.rejected,
            "client_errors": self.client_errors,
            "latency": self.latency.to_json(),
            "labels": dict(self.labels),
        }
        if not self.shadow.empty:
            data["shadow"] = self.shadow.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VersionCounters:
        return cls(
            int(data.get("requests", 0)),
            int(data.get("errors", 0)),
            int(data.get("rejected", 0)),
            int(data.get("client_errors", 0)),
            LatencyHistogram.from_json(data.get("latency", {})),
            Counter({str(k): int(v) for k, v in data.get("labels", {}).items()}),
            ShadowCounters.from_json(data.get("shadow", {})),
        )

    def summary(self) -> dict[str, Any]:
        """Counts, error rate, latency percentiles and mean (ms), prediction distribution."""
        p50, p95, p99 = self.latency.percentiles(0.5, 0.95, 0.99)
        total_labels = sum(self.labels.values())
        lat = self.latency
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.errors / self.requests, 6) if self.requests else 0.0,
            "rejected": self.rejected,
            "client_errors": self.client_errors,
            "latency_ms": {
                "p50": p50,
                "p95": p95,
                "p99": p99,
                "mean": round(lat.total_ms / lat.count, 3) if lat.count else None,
                "count": lat.count,
            },
            "predictions": {
                label: {"count": n, "share": round(n / total_labels, 6)}
                for label, n in sorted(self.labels.items(), key=lambda kv: (-kv[1], kv[0]))
            },
        }
