"""The fleet-wide view of one model's versions: every worker's buckets and every outcome, summed, compared.

What ``GET /admin/models/{name}/stats`` answers. It reads only the registry database (after writing this
worker's own pending buckets), so every replica answers the same for the same moment, and the figures survive
restarts. Comparisons are the always-valid sequential tests of :mod:`service.experiments.sequential`: each arm
of the split (and the shadow) against the control, safe to watch continuously.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from registry_db.records import TrafficRecord
from registry_db.repository import Registry
from registry_db.repository.experiments import FeedbackTotals, OutcomeSums
from service.experiments.counters import VersionCounters
from service.experiments.flusher import ExperimentsFlusher
from service.experiments.sequential import Comparison, compare_log_means, compare_means, compare_proportions

__all__ = ("FeedbackSums", "FleetStats", "VersionFigures", "as_served", "choose_control", "compare")

_MAX_POINTS = 1440


@dataclass(slots=True)
class FeedbackSums:
    """Outcome sums of one version (over any set of buckets)."""

    items: int = 0
    sums: OutcomeSums = field(default_factory=OutcomeSums)

    def add(self, t: FeedbackTotals) -> None:
        self.items += t.items
        self.sums.add(t.sums)

    def summary(self) -> dict[str, Any]:
        s = self.sums
        return {
            "count": self.items,
            "outcomes": s.outcomes,
            "accuracy": round(s.correct / s.outcomes, 6) if s.outcomes else None,
            "rewards": s.rewards,
            "reward_mean": round(s.reward_sum / s.rewards, 6) if s.rewards else None,
            "mean_abs_error": round(s.abs_error_sum / s.errors_n, 6) if s.errors_n else None,
        }


@dataclass(slots=True)
class VersionFigures:
    counters: VersionCounters = field(default_factory=VersionCounters)
    feedback: FeedbackSums = field(default_factory=FeedbackSums)

    def summary(self) -> dict[str, Any]:
        data = self.counters.summary()
        data["feedback"] = self.feedback.summary()
        if not self.counters.shadow.empty:
            data["shadow"] = self.counters.shadow.summary()
        return data


def choose_control(traffic: TrafficRecord | None, production: str | None, asked: str | None) -> str | None:
    """The arm the others are compared with: the one asked for, else ``production`` when it is in the split,
    else the heaviest arm (ties to the lower label), else ``production``."""
    if asked:
        return asked
    arms = [(e.version, e.weight) for e in traffic.splits] if traffic else []
    if production is not None and (not arms or production in {v for v, _ in arms}):
        return production
    if arms:
        return sorted(arms, key=lambda vw: (-vw[1], vw[0]))[0][0]
    return None


_MEANS = (
    # metric, (n, sum, sum of squares) field names of OutcomeSums, higher is better
    ("reward", ("rewards", "reward_sum", "reward_sq"), True),
    ("mean_abs_error", ("errors_n", "abs_error_sum", "abs_error_sq"), False),
)


def compare(control: VersionFigures, arm: VersionFigures, *, alpha: float) -> dict[str, Comparison]:
    """Every metric both versions have, arm versus control, each an always-valid comparison."""
    c, a = control.counters, arm.counters
    out: dict[str, Comparison] = {
        "error_rate": compare_proportions(
            c.errors, c.requests, a.errors, a.requests, metric="error_rate", alpha=alpha, higher_is_better=False
        ),
        # latency as a ratio of geometric means: logs tame the long tail, so the test holds at small samples
        "latency_ms": compare_log_means(
            *c.latency.log_moments(), *a.latency.log_moments(), metric="latency_ms", alpha=alpha
        ),
    }
    cf, af = control.feedback.sums, arm.feedback.sums
    if cf.outcomes or af.outcomes:
        out["accuracy"] = compare_proportions(
            cf.correct, cf.outcomes, af.correct, af.outcomes, metric="accuracy", alpha=alpha, higher_is_better=True
        )
    for metric, names, higher in _MEANS:
        if getattr(cf, names[0]) or getattr(af, names[0]):
            out[metric] = compare_means(
                *(getattr(cf, n) for n in names),
                *(getattr(af, n) for n in names),
                metric=metric,
                alpha=alpha,
                higher_is_better=higher,
            )
    return out


class FleetStats:
    """Reads and merges the fleet's figures for one model."""

    def __init__(self, *, registry: Registry, flusher: ExperimentsFlusher, bucket_s: int, alpha: float) -> None:
        self._registry = registry
        self._flusher = flusher
        self._bucket_s = bucket_s
        self.alpha = alpha

    async def figures(self, model: str, since: int) -> dict[str, VersionFigures]:
        """Per version, everything since ``since`` (epoch seconds), fleet-wide."""
        totals, _ = await self._read(model, since, None)
        return totals

    async def _read(
        self, model: str, since: int, bucket_s: int | None
    ) -> tuple[dict[str, VersionFigures], dict[int, dict[str, VersionFigures]]]:
        """This worker's buckets written, then every worker's rows and outcomes since ``since``: the totals per
        version and (with ``bucket_s``) the same per timeline point."""
        await self._flusher.flush_stats()
        totals: dict[str, VersionFigures] = {}
        points: dict[int, dict[str, VersionFigures]] = {}
        for version, start, _len, data in await self._registry.experiments.read_buckets(model, since):
            counters = VersionCounters.from_json(data)
            totals.setdefault(version, VersionFigures()).counters.merge(counters)
            if bucket_s is not None:
                point = points.setdefault(start - start % bucket_s, {})
                point.setdefault(version, VersionFigures()).counters.merge(counters)
        for t in await self._registry.experiments.feedback_totals(model, since):
            totals.setdefault(t.version, VersionFigures()).feedback.add(t)
            if bucket_s is not None:
                point = points.setdefault(t.bucket_start - t.bucket_start % bucket_s, {})
                point.setdefault(t.version, VersionFigures()).feedback.add(t)
        return totals, points

    async def report(
        self,
        model: str,
        *,
        window_s: int,
        bucket_s: int,
        traffic: TrafficRecord | None,
        production: str | None,
        control: str | None = None,
    ) -> dict[str, Any]:
        """The stats document: per version totals, the timeline, and each arm compared with the control."""
        now = int(time.time())
        since = now - window_s
        since -= since % self._bucket_s
        bucket_s = max(bucket_s, self._bucket_s, -(-window_s // _MAX_POINTS))
        totals, points = await self._read(model, since, bucket_s)
        arms = [e.version for e in traffic.splits] if traffic else []
        chosen = choose_control(traffic, production, control)
        shadow = (
            {"version": traffic.shadow_version, "percent": traffic.shadow_percent}
            if traffic is not None and traffic.shadow_version
            else None
        )
        contenders = [v for v in arms if v != chosen]
        if shadow is not None and shadow["version"] not in contenders and shadow["version"] != chosen:
            contenders.append(str(shadow["version"]))
        comparison: dict[str, Any] = {"control": chosen, "alpha": self.alpha, "arms": {}}
        if chosen is not None:
            base = totals.get(chosen, VersionFigures())
            for version in contenders:
                figures = totals.get(version, VersionFigures())
                if shadow is not None and version == shadow["version"]:
                    figures = as_served(figures)
                found = compare(base, figures, alpha=self.alpha)
                comparison["arms"][version] = {name: c.as_dict() for name, c in found.items()}
        return {
            "model_name": model,
            "scope": "fleet",
            "since": _iso(since),
            "until": _iso(now),
            "workers": await self._registry.experiments.workers_since(model, since),
            "control": chosen,
            "alpha": self.alpha,
            "traffic": [{"version": e.version, "weight": e.weight} for e in traffic.splits] if traffic else [],
            "shadow": shadow,
            "versions": {v: f.summary() for v, f in sorted(totals.items())},
            "comparison": comparison,
            "timeline": {
                "bucket_s": bucket_s,
                "points": [
                    {"at": _iso(at), "versions": {v: _point(f) for v, f in sorted(versions.items())}}
                    for at, versions in sorted(points.items())
                ],
            },
        }


def as_served(figures: VersionFigures) -> VersionFigures:
    """A shadow's copies seen as if they had been its calls (their errors and latency), for the comparison."""
    shadow = figures.counters.shadow
    return VersionFigures(VersionCounters(requests=shadow.requests, errors=shadow.errors, latency=shadow.latency))


def _point(figures: VersionFigures) -> dict[str, Any]:
    c = figures.counters
    p50, p99 = c.latency.percentiles(0.5, 0.99)
    return {
        "requests": c.requests,
        "errors": c.errors,
        "error_rate": round(c.errors / c.requests, 6) if c.requests else None,
        "rejected": c.rejected,
        "latency_ms": {"p50": p50, "p99": p99},
        "feedback": figures.feedback.summary(),
        "shadow": c.shadow.summary() if not c.shadow.empty else None,
    }


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")
