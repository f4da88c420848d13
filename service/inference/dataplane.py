"""The transport-agnostic data plane (MLServer's DataPlane): resolve -> validate -> preprocess -> batch.

Both the V2 and V1 HTTP adapters call this; nothing here knows about HTTP.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.errors import EngineUnavailable
from service.inference.engine_pool import EnginePool, ServedVersion
from service.inference.routing_state import RoutingState
from service.observability.metrics import Metrics
from service.observability.stats import StatsBook

__all__ = ("DataPlane", "InferenceResult")


@dataclass(slots=True)
class InferenceResult:
    """Outputs ``(batch, *dims)`` per name, plus timings in milliseconds."""

    outputs: dict[str, np.ndarray]
    preprocessing_ms: float
    inference_ms: float


class DataPlane:
    """Shared by every transport; one per worker."""

    def __init__(self, *, routing: RoutingState, pool: EnginePool, metrics: Metrics, stats: StatsBook) -> None:
        self.routing = routing
        self.pool = pool
        self.metrics = metrics
        self.stats = stats
        self.ready = False
        """False until start-up loaded the routed engines, and again once draining begins."""

    async def resolve(self, model: str, version: str | None, routing_key: str | None = None) -> ServedVersion:
        """The loaded version that serves this call (loading it on first use)."""
        record = await self.routing.resolve(model, version, routing_key)
        served = self.pool.get_loaded(record.model_name, record.version)
        if served is None or served.record.sha256 != record.sha256:
            served = await self.pool.acquire(record)
        return served

    async def infer(self, served: ServedVersion, tensors: Any, *, timeout_s: float | None = None) -> InferenceResult:
        """Validate ``tensors`` against the version's signature, preprocess and run through its batcher."""
        started = time.perf_counter()
        inputs = served.validator.validate(tensors)
        if served.preprocess is not None:
            inputs = served.preprocess(inputs)
        queued = time.perf_counter()
        outputs = await served.batcher.submit(inputs, timeout_s=timeout_s)
        done = time.perf_counter()
        return InferenceResult(outputs, (queued - started) * 1000.0, (done - queued) * 1000.0)

    def model_ready(self, model: str, version: str | None) -> bool:
        """Whether calls to this model (or version) would be served by a loaded engine right now."""
        routing = self.routing.model_versions(model)
        if routing is None:
            return False
        if version is None:
            targets = {e.version for e in routing.splits} or (
                {routing.aliases["production"]} if "production" in routing.aliases else set()
            )
            return bool(targets) and all(self.pool.is_loaded(model, v) for v in targets)
        return self.pool.is_loaded(model, version)

    def explain_unready(self, model: str, version: str) -> EngineUnavailable:
        reason = self.pool.failure(model, version) or "not loaded yet"
        return EngineUnavailable(f"model '{model}' version '{version}' is not ready: {reason}")
