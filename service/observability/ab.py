"""A/B comparison of split arms: error-rate difference with a two-proportion z-test, latency deltas and
the total-variation distance between prediction distributions (how differently the arms answer)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ("compare_arms",)


def _two_proportion_p(errors_a: int, n_a: int, errors_b: int, n_b: int) -> float | None:
    if n_a == 0 or n_b == 0:
        return None
    pooled = (errors_a + errors_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    if variance == 0:
        return 1.0
    z = (errors_a / n_a - errors_b / n_b) / math.sqrt(variance)
    return math.erfc(abs(z) / math.sqrt(2))


def _tv_distance(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    if not a or not b:
        return None
    labels = set(a) | set(b)
    return round(0.5 * sum(abs(a.get(k, {}).get("share", 0.0) - b.get(k, {}).get("share", 0.0)) for k in labels), 6)


def compare_arms(versions: dict[str, dict[str, Any]], arms: list[str]) -> dict[str, Any]:
    """Pairwise comparison of the first arm (control) against each other arm; ``{}`` with fewer than two."""
    if len(arms) < 2:
        return {}
    control = arms[0]
    base = versions.get(control)
    result: dict[str, Any] = {"control": control, "arms": {}}
    for arm in arms[1:]:
        other = versions.get(arm)
        if base is None or other is None:
            result["arms"][arm] = {"note": "no traffic observed on this replica yet"}
            continue
        p50_a, p50_b = base["latency_ms"]["p50"], other["latency_ms"]["p50"]
        result["arms"][arm] = {
            "requests": {control: base["requests"], arm: other["requests"]},
            "error_rate_diff": round(other["error_rate"] - base["error_rate"], 6),
            "error_rate_p_value": _two_proportion_p(
                base["errors"], base["requests"], other["errors"], other["requests"]
            ),
            "latency_p50_diff_ms": round(p50_b - p50_a, 3) if p50_a is not None and p50_b is not None else None,
            "prediction_tv_distance": _tv_distance(base["predictions"], other["predictions"]),
        }
    return result
