"""The shadow observer never blocks: a full queue drops the copy and counts it."""

from __future__ import annotations

import numpy as np

from registry_db.records import ModelRouting, SplitEntry
from service.experiments.accumulator import StatsAccumulator
from service.experiments.shadow import ShadowMirror, agreement
from service.inference.dataplane import InferCall, InferenceEvent, InferResult
from service.observability.metrics import Metrics


class _Routing:
    def model_routing(self, model: str) -> ModelRouting:
        return ModelRouting(splits=(SplitEntry("1", 100),), shadow_version="2", shadow_percent=100)


def _event(version: str | None = None) -> InferenceEvent:
    call = InferCall("m", version, "v2_infer", "r", ())
    call.served_version = "1"
    result = InferResult("m", "1", {"y": np.zeros((1, 3), np.float32)}, (), None, 0.0, 0.0, 0.0)
    return InferenceEvent(call, result, None, 200, 0.001)


async def test_a_full_queue_drops_and_counts() -> None:
    stats = StatsAccumulator()
    mirror = ShadowMirror(routing=_Routing(), stats=stats, metrics=Metrics(), queue_size=2)  # type: ignore[arg-type]
    for _ in range(5):
        mirror.observe(_event())
    mirror.observe(_event(version="1"))  # explicit versions are not mirrored
    assert stats.totals("m")["2"].shadow.dropped == 3


def test_agreement_compares_top_classes_and_values() -> None:
    a = np.array([[0.1, 0.9], [0.8, 0.2]], np.float32)
    agreed, diff = agreement({"y": a}, {"y": a + 0.05}) or (None, 0.0)
    assert agreed is True and abs(diff - 0.05) < 1e-6
    agreed, diff = agreement({"y": a}, {"y": a[:, ::-1]}) or (None, 0.0)
    assert agreed is False and diff > 0.5
    assert agreement({"y": a}, {"z": a}) is None
    agreed, diff = agreement({"v": np.array([1.0])}, {"v": np.array([1.0 + 1e-9])}) or (None, 1.0)
    assert agreed is True and diff < 1e-8
    verdict = agreement({"v": np.array([1.0])}, {"v": np.array([1.1])})
    assert verdict is not None and verdict[0] is False
