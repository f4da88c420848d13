"""Prometheus metrics. Names are a contract with docs/monitoring.md and deploy/prometheus rules.

Each process has its own registry (with ``PROMETHEUS_MULTIPROC_DIR`` unset, workers report separately and
Prometheus aggregates across pods and workers).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ("Metrics", "CONTENT_TYPE_LATEST")

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """All metrics of one service instance (own registry: tests create many apps in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "modelport_requests", "Inference requests by outcome", ("model", "version", "route", "status"), registry=r
        )
        self.request_duration = Histogram(
            "modelport_request_duration_seconds",
            "End-to-end inference request latency",
            ("model", "version", "route"),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_duration = Histogram(
            "modelport_inference_duration_seconds",
            "Backend predict time per batch",
            ("model", "version"),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "modelport_batch_size", "Rows per executed batch", ("model", "version"), buckets=_BATCH_BUCKETS, registry=r
        )
        self.queue_depth = Gauge(
            "modelport_queue_depth", "Requests waiting per engine", ("model", "version"), registry=r
        )
        self.rejected = Counter(
            "modelport_rejected", "Requests refused by backpressure", ("model", "version", "reason"), registry=r
        )
        self.loaded_engines = Gauge("modelport_loaded_engines", "Engines currently loaded", registry=r)
        self.cpu_budget = Gauge(
            "modelport_cpu_budget", "CPUs this process may use (affinity mask, cgroup quota)", registry=r
        )
        self.load_failures = Counter(
            "modelport_engine_load_failures", "Engine loads that failed", ("model", "version"), registry=r
        )
        self.integrity_failures = Counter(
            "modelport_integrity_failures", "Artifacts refused for a sha256 mismatch", ("model", "version"), registry=r
        )
        self.registry_generation = Gauge(
            "modelport_registry_generation", "Registry generation this worker routes by", registry=r
        )
        self.ready = Gauge("modelport_ready", "1 when this worker is ready for traffic", registry=r)
        self.split_weight = Gauge(
            "modelport_split_weight",
            "Traffic split weight per version (absent: not in a split)",
            ("model", "version"),
            registry=r,
        )
        self.experiment_flush_failures = Counter(
            "modelport_experiment_flush_failures",
            "Writes of statistics or predictions to the registry that failed (retried)",
            ("kind",),
            registry=r,
        )
        self.prediction_log_dropped = Gauge(
            "modelport_prediction_log_dropped",
            "Predictions not logged since start because the pending queue was full (their outcomes get 404)",
            registry=r,
        )
        self.feedback = Counter(
            "modelport_feedback", "Outcome feedback items by result", ("model", "result"), registry=r
        )
        self.shadow_requests = Counter(
            "modelport_shadow_requests",
            "Mirrored calls by outcome (served, error, dropped)",
            ("model", "version", "outcome"),
            registry=r,
        )
        self.rollout_transitions = Counter(
            "modelport_rollout_transitions",
            "Rollout controller decisions (advance, promote, rollback, abort)",
            ("model", "decision"),
            registry=r,
        )

        self.artifact_cache_events = Counter(
            "modelport_artifact_cache_events",
            "Artifact store with a bucket: cache hit, fetched, damaged (re-fetched), evicted",
            ("event",),
            registry=r,
        )
        self.artifact_transfer_seconds = Histogram(
            "modelport_artifact_transfer_seconds",
            "Artifact uploads to and downloads from the bucket",
            ("direction",),
            buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0),
            registry=r,
        )
        self.artifact_transfer_bytes = Counter(
            "modelport_artifact_transfer_bytes", "Bytes moved to and from the bucket", ("direction",), registry=r
        )

    def on_artifact_event(self, event: str, size_bytes: int, seconds: float) -> None:
        """Listener for :class:`registry_db.store.ArtifactStore` (upload/download transfers and cache events)."""
        if event in ("upload", "download"):
            self.artifact_transfer_seconds.labels(direction=event).observe(seconds)
            self.artifact_transfer_bytes.labels(direction=event).inc(size_bytes)
            if event == "download":
                self.artifact_cache_events.labels(event="fetched").inc()
        else:
            self.artifact_cache_events.labels(event=event).inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
