"""Triton's statistics extension from the counters ``/metrics`` already keeps: one source, two views.

What is counted, per model version on this worker (Triton's field: where it comes from):

* ``success`` count and ns: ``modelport_request_duration_seconds`` (observed for served calls only, every route
  and protocol);
* ``fail`` count: ``modelport_requests`` with any other status, after routing resolved the version (its ns is 0:
  refused calls' durations are not kept);
* ``inference_count``: rows executed (``modelport_batch_size`` sum); ``execution_count``: batches executed;
* ``queue``, ``compute_input``, ``compute_infer``, ``compute_output``, ``last_inference``, ``batch_stats``: 0 or
  empty. The batcher times whole batches, not each request's share, so any per-request figure would be invented.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from prometheus_client.metrics import MetricWrapperBase

from service.observability.metrics import Metrics

__all__ = ("Duration", "VersionStatistics", "version_statistics")


@dataclass(frozen=True, slots=True)
class Duration:
    count: int = 0
    ns: int = 0


@dataclass(frozen=True, slots=True)
class VersionStatistics:
    name: str
    version: str
    success: Duration
    fail: Duration
    inference_count: int
    execution_count: int


def _samples(metric: MetricWrapperBase, suffix: str) -> dict[tuple[str, str], float]:
    """Sum of ``<name><suffix>`` samples per (model, version), over every other label."""
    totals: dict[tuple[str, str], float] = defaultdict(float)
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith(suffix):
                labels = sample.labels
                if suffix == "_total" and labels.get("status") == "200":
                    continue  # served calls are counted by the duration histogram
                totals[(labels["model"], labels["version"])] += sample.value
    return totals


def version_statistics(metrics: Metrics, wanted: list[tuple[str, str]]) -> list[VersionStatistics]:
    """Statistics of each (model, version) in ``wanted``, zeros for versions that saw no call here."""
    served = _samples(metrics.request_duration, "_count")
    served_s = _samples(metrics.request_duration, "_sum")
    failed = _samples(metrics.requests, "_total")
    rows = _samples(metrics.batch_size, "_sum")
    batches = _samples(metrics.batch_size, "_count")
    result: list[VersionStatistics] = []
    for key in wanted:
        result.append(
            VersionStatistics(
                name=key[0],
                version=key[1],
                success=Duration(int(served.get(key, 0)), int(served_s.get(key, 0.0) * 1e9)),
                fail=Duration(int(failed.get(key, 0))),
                inference_count=int(rows.get(key, 0)),
                execution_count=int(batches.get(key, 0)),
            )
        )
    return result
