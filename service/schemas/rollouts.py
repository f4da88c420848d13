"""``POST /admin/models/{name}/rollouts`` and the rollout records the rollout routes answer with."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from registry_db.repository.rollouts import RolloutRecord
from service.schemas.fields import ExactInt, VersionLabel, body_config

__all__ = ("RolloutBody", "RolloutGates", "RolloutGuards", "RolloutOut")

Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


def _valid_steps(steps: list[int]) -> list[int]:
    if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise ValueError(f"steps must increase strictly, got {steps}")
    if steps[-1] != 100:
        raise ValueError(f"the last step must be 100 (the candidate takes all traffic, then is promoted), got {steps}")
    return steps


class RolloutGuards(BaseModel):
    """Roll back at once when one fails (checked on every evaluation)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_error_rate_increase: Fraction = 0.0
    """Roll back when the candidate's error rate is above control's by more than this, with confidence (the
    always-valid interval's lower bound): 0 = any confident increase."""
    max_latency_ratio: Annotated[float, Field(ge=1.0, le=1000.0, allow_inf_nan=False)] | None = 2.0
    """Roll back when the candidate's p99 latency exceeds this multiple of control's (with ``min_samples`` each)."""
    min_shadow_agreement: Fraction | None = None
    """Roll back when the candidate, as a shadow, agrees with the primary on fewer than this share of calls."""


class RolloutGates(BaseModel):
    """Must hold (beside the hold time and sample count) before the next step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accuracy_margin: Fraction | None = None
    """Advance only once the candidate's accuracy (from feedback) is shown not worse than control's by more than
    this (always-valid non-inferiority). None: accuracy is not a gate."""
    reward_margin: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] | None = None
    """The same for mean reward, in reward units."""


class RolloutBody(BaseModel):
    """A candidate ramped through ``steps`` (candidate weight %, 0 = shadow only), then promoted."""

    model_config = body_config(
        {
            "candidate": "2",
            "steps": [5, 25, 50, 100],
            "hold_s": 300,
            "min_samples": 500,
            "guards": {"max_error_rate_increase": 0.01, "max_latency_ratio": 1.5},
            "gates": {"accuracy_margin": 0.01},
        }
    )

    candidate: VersionLabel
    control: VersionLabel | None = None
    """Default: the version ``production`` points at."""
    steps: Annotated[
        list[Annotated[ExactInt, Field(ge=0, le=100)]], Field(min_length=2, max_length=20), AfterValidator(_valid_steps)
    ] = [5, 25, 50, 100]
    hold_s: Annotated[ExactInt, Field(ge=0, le=30 * 86400)] = 300
    """Least time at each step."""
    min_samples: Annotated[ExactInt, Field(ge=1, le=100_000_000)] = 500
    """Least calls the candidate serves (or mirrors, at a shadow step) at each step."""
    max_step_s: Annotated[ExactInt, Field(ge=1, le=90 * 86400)] | None = None
    """Roll back when the gates have not held after this long at one step (None: wait as long as it takes)."""
    guards: RolloutGuards = RolloutGuards()
    gates: RolloutGates = RolloutGates()

    def plan(self) -> dict[str, Any]:
        """What the rollout row stores and the controller follows."""
        return self.model_dump(exclude={"candidate", "control"})


class RolloutOut(msgspec.Struct, frozen=True):
    id: int
    model_name: str
    candidate: str
    control: str
    state: str
    """``running``, ``promoted``, ``rolled_back`` or ``aborted``."""
    step: int
    weight: int
    """The candidate's share now (0: shadow only)."""
    plan: dict[str, Any]
    step_started_at: datetime
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    reason: str
    decisions: list[dict[str, Any]]
    """Every transition with the evidence it was decided on."""
    last_check: dict[str, Any] | None
    """The controller's latest evaluation: what it waits for, with the figures."""
    created_by: str

    @classmethod
    def of(cls, r: RolloutRecord) -> RolloutOut:
        return cls(
            r.id, r.model, r.candidate, r.control, r.state, r.step, r.weight, r.plan, r.step_started_at,
            r.created_at, r.updated_at, r.ended_at, r.reason, r.decisions, r.last_check, r.created_by,
        )  # fmt: skip
