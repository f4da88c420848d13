"""The experiment parts one worker holds, built together and started and stopped with its runtime."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from registry_db.repository import Registry
from service.experiments.accumulator import StatsAccumulator
from service.experiments.feedback import FeedbackRecorder
from service.experiments.fleet import FleetStats
from service.experiments.flusher import ExperimentsFlusher
from service.experiments.observers import ExperimentsObserver
from service.experiments.prediction_log import PredictionLog
from service.experiments.rollouts import RolloutController, RolloutOperations
from service.experiments.shadow import ShadowMirror
from service.inference.dataplane import DataPlane, InferenceObserver
from service.inference.routing_state import RoutingState
from service.management.operations import RoutingOperations
from service.observability.metrics import Metrics
from service.settings import Settings

__all__ = ("Experiments", "worker_identity")


def worker_identity() -> str:
    """Unique per process and start: host, pid and a random suffix (a restarted pid is a new worker)."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{os.urandom(4).hex()}"


@dataclass(frozen=True, slots=True)
class Experiments:
    stats: StatsAccumulator
    predictions: PredictionLog
    flusher: ExperimentsFlusher
    feedback: FeedbackRecorder
    fleet: FleetStats
    shadow: ShadowMirror
    rollouts: RolloutOperations
    controller: RolloutController

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        registry: Registry,
        metrics: Metrics,
        routing: RoutingState,
        operations: RoutingOperations,
    ) -> Experiments:
        stats = StatsAccumulator(bucket_s=settings.stats_bucket_s)
        predictions = PredictionLog(max_pending=settings.prediction_log_max_pending)
        flusher = ExperimentsFlusher(
            registry=registry,
            stats=stats,
            predictions=predictions,
            metrics=metrics,
            worker=worker_identity(),
            stats_interval_s=settings.stats_flush_interval_s,
            predictions_interval_s=settings.prediction_flush_interval_s,
            retention_s=settings.stats_retention_s,
            feedback_window_s=settings.feedback_window_s,
        )
        feedback = FeedbackRecorder(
            registry=registry,
            predictions=predictions,
            flusher=flusher,
            metrics=metrics,
            window_s=settings.feedback_window_s,
            bucket_s=settings.stats_bucket_s,
        )
        fleet = FleetStats(
            registry=registry, flusher=flusher, bucket_s=settings.stats_bucket_s, alpha=settings.experiment_alpha
        )
        shadow = ShadowMirror(routing=routing, stats=stats, metrics=metrics, queue_size=settings.shadow_queue)
        rollouts = RolloutOperations(registry, operations)
        controller = RolloutController(
            registry=registry,
            operations=rollouts,
            fleet=fleet,
            metrics=metrics,
            holder=flusher.worker,
            interval_s=settings.rollout_interval_s,
            lease_s=settings.rollout_lease_s,
        )
        return cls(stats, predictions, flusher, feedback, fleet, shadow, rollouts, controller)

    def observers(self, settings: Settings) -> tuple[InferenceObserver, ...]:
        log = self.predictions if settings.feedback_window_s > 0 else None
        return (ExperimentsObserver(self.stats, log), self.shadow)

    def bind(self, dataplane: DataPlane, settings: Settings) -> None:
        dataplane.calm_below = settings.shadow_max_primary_inflight
        self.shadow.bind(dataplane)

    def start(self) -> None:
        self.flusher.start()
        self.shadow.start()
        self.controller.start()

    async def stop(self) -> None:
        await self.controller.stop()
        await self.shadow.stop()
        await self.flusher.stop()
