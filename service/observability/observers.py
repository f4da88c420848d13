"""The data plane's built-in observers: Prometheus metrics and failure logs (the experiment observers, fleet
statistics and the prediction log, live in :mod:`service.experiments.observers`).

Each sees every inference call once (``DataPlane`` calls them after the reply is decided). They run on the
event loop for every request, so each keeps its per-call cost to a dictionary lookup and a few increments.
"""

from __future__ import annotations

from typing import Any

import structlog

from service.errors import EngineUnavailable, Overloaded
from service.inference.dataplane import InferenceEvent
from service.observability.metrics import Metrics

__all__ = ("FailureLog", "MetricsObserver", "default_observers")

_log = structlog.get_logger("service.inference")
_UNRESOLVED = "-"
"""The version label of calls that never resolved to a version (unknown model, undecodable body)."""


class MetricsObserver:
    """Request counts, latency of served calls and refusals, labelled by the version that served."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}

    def observe(self, event: InferenceEvent) -> None:
        call = event.call
        version = call.served_version or _UNRESOLVED
        # never label by a client-chosen name that did not resolve (cardinality)
        model = call.model if call.served_version is not None else "_unresolved"
        key = (model, version, call.protocol, event.status)
        children = self._children.get(key)
        if children is None:  # labels() costs microseconds: resolve each label set once
            m = self._metrics
            children = self._children[key] = (
                m.requests.labels(model=model, version=version, route=call.protocol, status=str(event.status)),
                m.request_duration.labels(model=model, version=version, route=call.protocol),
            )
        children[0].inc()
        if event.error is None:
            children[1].observe(event.duration_s)
            return
        error = event.error
        if isinstance(error, Overloaded):
            reason = error.reason
        elif isinstance(error, EngineUnavailable):
            reason = "not_ready"
        else:
            return
        self._metrics.rejected.labels(model=call.model, version=version, reason=reason).inc()


class FailureLog:
    """One structured line per failed call; served calls are counted, not logged (a line per request would
    cost more than the inference). Inputs are never logged."""

    def observe(self, event: InferenceEvent) -> None:
        if event.error is None:
            return
        call = event.call
        log = _log.error if event.status >= 500 else _log.info
        log(
            "inference_failed",
            request_id=call.request_id,
            model=call.model if call.served_version is not None else "_unresolved",
            version=call.served_version or _UNRESOLVED,
            route=call.protocol,
            status=event.status,
            duration_ms=round(event.duration_s * 1000.0, 3),
        )


def default_observers(metrics: Metrics) -> tuple[MetricsObserver, FailureLog]:
    return MetricsObserver(metrics), FailureLog()
