"""Outcome feedback: a ground-truth label or a reward for an earlier prediction, attributed to its version.

An outcome names the prediction by the ``X-Request-ID`` its response carried. The prediction log (written in
batches by every worker of every replica) says which version served that call and what it predicted, so an
outcome may reach any replica, after restarts, within ``feedback_window_s``. Each prediction takes one
outcome: a repeat answers ``duplicate`` and changes nothing, an id no prediction has answers ``unknown`` (404
for a single item), so neither a retry nor a made-up id moves the figures.

Truth is compared per instance: a label with the predicted label (``7`` and ``"7"`` are the same class), a
number with a predicted value (absolute error). A reward is any finite number the application chooses
(revenue, a click, a rating) and is averaged per version.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from registry_db.repository import Registry
from registry_db.repository.experiments import Outcome, OutcomeSums, PredictionRecord
from service.errors import InvalidInput, NotImplementedFeature
from service.experiments.flusher import ExperimentsFlusher
from service.experiments.prediction_log import PredictionLog
from service.observability.metrics import Metrics

__all__ = ("FeedbackItem", "FeedbackRecorder", "FeedbackResult", "score")

_MAX_WAIT_S = 3.0


@dataclass(frozen=True, slots=True)
class FeedbackItem:
    request_id: str
    truth: Any = None
    """A label or value, or a list with one per instance of the call; None when only a reward is sent."""
    has_truth: bool = False
    reward: float | None = None


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    request_id: str
    status: str
    """``recorded``, ``duplicate``, ``unknown`` or ``expired``."""
    model_version: str | None


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def score(record: PredictionRecord, item: FeedbackItem) -> Outcome:
    """The sums one item adds to its prediction's version; InvalidInput when the truth cannot be compared."""
    outcomes = correct = errors_n = 0
    abs_sum = abs_sq = 0.0
    truth_list: list[Any] | None = None
    if item.has_truth:
        predictions = record.prediction
        if not predictions:
            raise InvalidInput(
                f"request '{item.request_id}' has no single prediction to compare a truth with "
                "(its output is not one label or value per instance): send a reward instead"
            )
        truths = item.truth if isinstance(item.truth, list) else [item.truth]
        if len(truths) != len(predictions):
            raise InvalidInput(
                f"request '{item.request_id}' predicted {len(predictions)} instance(s): "
                f"send 'truth' as a list of {len(predictions)}, got {len(truths)}"
            )
        for predicted, truth in zip(predictions, truths, strict=True):
            if predicted is None or truth is None:
                continue
            if isinstance(predicted, str):
                outcomes += 1
                correct += _label(truth) == predicted
                continue
            if isinstance(truth, bool) or not isinstance(truth, int | float):
                raise InvalidInput(
                    f"request '{item.request_id}' predicted a value ({predicted}): its truth must be a number, "
                    f"got {type(truth).__name__}"
                )
            error = abs(float(truth) - float(predicted))
            errors_n += 1
            abs_sum += error
            abs_sq += error * error
        truth_list = truths
    rewards = 0
    reward_sum = reward_sq = 0.0
    if item.reward is not None:
        rewards, reward_sum, reward_sq = 1, item.reward, item.reward * item.reward
    return Outcome(
        truth_list, OutcomeSums(outcomes, correct, rewards, reward_sum, reward_sq, errors_n, abs_sum, abs_sq)
    )


class FeedbackRecorder:
    """Attributes outcomes through the prediction log; one per worker."""

    def __init__(
        self,
        *,
        registry: Registry,
        predictions: PredictionLog,
        flusher: ExperimentsFlusher,
        metrics: Metrics,
        window_s: int,
        bucket_s: int,
    ) -> None:
        self._registry = registry
        self._predictions = predictions
        self._flusher = flusher
        self._metrics = metrics
        self._window_s = window_s
        self._bucket_s = bucket_s

    async def record(self, model: str, items: Sequence[FeedbackItem]) -> list[FeedbackResult]:
        """Claim each item's prediction; ids not found yet are looked up once more after the other workers'
        next prediction flush (an outcome may overtake its prediction to another replica)."""
        if self._window_s <= 0:
            raise NotImplementedFeature("feedback is off on this server (MODELPORT_FEEDBACK_WINDOW_S=0)")
        if any(self._predictions.holds(model, item.request_id) for item in items):
            await self._flusher.flush_predictions()
        results: dict[int, FeedbackResult] = {}
        missing = await self._claim(model, list(enumerate(items)), results)
        if missing:
            await asyncio.sleep(min(_MAX_WAIT_S, self._flusher.predictions_interval_s + 0.25))
            await self._claim(model, missing, results)
        out = [results[i] for i in range(len(items))]
        for result in out:
            self._metrics.feedback.labels(model=model, result=result.status).inc()
        return out

    async def _claim(
        self, model: str, batch: list[tuple[int, FeedbackItem]], results: dict[int, FeedbackResult]
    ) -> list[tuple[int, FeedbackItem]]:
        not_before = datetime.now(UTC) - timedelta(seconds=self._window_s)
        missing = []
        for index, item in batch:
            claim = await self._registry.experiments.claim_outcome(
                model,
                item.request_id,
                not_before=not_before,
                bucket_s=self._bucket_s,
                score=lambda record, item=item: score(record, item),  # type: ignore[misc]
            )
            version = claim.prediction.version if claim.prediction is not None else None
            results[index] = FeedbackResult(item.request_id, claim.state, version)
            if claim.state == "unknown":
                missing.append((index, item))
        return missing


def finite_reward(value: float | None) -> float | None:
    """Rewards must be finite numbers (a NaN would poison every mean it touches)."""
    if value is not None and not math.isfinite(value):
        raise InvalidInput("reward must be a finite number")
    return value
