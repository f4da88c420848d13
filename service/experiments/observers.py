"""The experiment observer on the data plane: fleet statistics and the prediction log, in one pass per call.

It runs on the event loop for every call, so it costs a dictionary lookup and a few additions; nothing here
touches the database (the flusher does, in batches). One observer rather than two: each observer call, and each
value two of them would share, costs about a microsecond per request.
"""

from __future__ import annotations

from service.experiments.accumulator import StatsAccumulator
from service.experiments.prediction_log import PredictionLog
from service.experiments.predictions import predicted
from service.inference.dataplane import InferenceEvent

__all__ = ("ExperimentsObserver",)


class ExperimentsObserver:
    """Per-version requests, errors, latencies and predicted labels into this worker's current bucket, and
    what each served call predicted, under its request id, for outcomes sent later (``log``; None: no feedback).

    Only what the version did counts as its requests and errors: a call that never resolved says nothing about
    any version; backpressure (503: queue full, queue timeout, not ready) and the caller's mistakes after
    routing (4xx) are counted apart, so an arm that happened to be busy, or that got bad inputs, is not
    condemned for it.
    """

    __slots__ = ("_log", "_stats")

    def __init__(self, stats: StatsAccumulator, log: PredictionLog | None) -> None:
        self._stats = stats
        self._log = log

    def observe(self, event: InferenceEvent) -> None:
        call = event.call
        version = call.served_version
        status = event.status
        if version is None or status == 404:
            return
        counters = self._stats.counters(call.model, version)
        if status != 200:
            if status == 503:
                counters.rejected += 1
            elif status < 500:
                counters.client_errors += 1
            else:
                counters.requests += 1
                counters.errors += 1
            return
        counters.requests += 1
        counters.latency.add(event.duration_s * 1000.0)
        result = event.result
        labels = predicted(result) if result is not None else None
        if labels:
            for label in labels:
                if label.__class__ is str:
                    counters.add_label(label)
        if self._log is not None:
            # logged even without a single prediction (an image, a sequence): such a call can still get a reward
            self._log.append(call.model, call.request_id, version, labels or [])
