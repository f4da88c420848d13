"""The experiment observers on the data plane: fleet statistics and the prediction log.

Both run on the event loop for every call, so each costs a dictionary lookup and a few additions; nothing
here touches the database (the flusher does, in batches).
"""

from __future__ import annotations

from service.experiments.accumulator import StatsAccumulator
from service.experiments.prediction_log import PredictionLog
from service.experiments.predictions import predictions_of
from service.inference.dataplane import InferenceEvent

__all__ = ("FleetStatsObserver", "PredictionLogObserver")


class FleetStatsObserver:
    """Per-version requests, errors, latencies and predicted labels, into this worker's current bucket.

    Only what the version did counts as its requests and errors: a call that never resolved says nothing about
    any version; backpressure (503: queue full, queue timeout, not ready) and the caller's mistakes after
    routing (4xx) are counted apart, so an arm that happened to be busy, or that got bad inputs, is not
    condemned for it.
    """

    def __init__(self, stats: StatsAccumulator) -> None:
        self._stats = stats

    def observe(self, event: InferenceEvent) -> None:
        call = event.call
        status = event.status
        if call.served_version is None or status == 404:
            return
        counters = self._stats.counters(call.model, call.served_version)
        if status == 503:
            counters.rejected += 1
            return
        if 400 <= status < 500:
            counters.client_errors += 1
            return
        counters.requests += 1
        if status >= 500:
            counters.errors += 1
            return
        counters.latency.add(event.duration_s * 1000.0)
        for label in predictions_of(event) or ():
            if isinstance(label, str):
                counters.add_label(label)


class PredictionLogObserver:
    """Keeps what each served call predicted, under its request id, for outcomes sent later."""

    def __init__(self, log: PredictionLog) -> None:
        self._log = log

    def observe(self, event: InferenceEvent) -> None:
        call = event.call
        if event.status != 200 or call.served_version is None:
            return
        # logged even without a single prediction (an image, a sequence): such a call can still get a reward
        self._log.append(call.model, call.request_id, call.served_version, predictions_of(event) or [])
