"""Rollouts: a candidate version ramped through weight steps, promoted or rolled back by itself.

A plan is a list of candidate weights (``[0, 5, 25, 50, 100]``; 0 is a shadow stage: the candidate gets a copy
of every call and answers none), a hold time and a sample count per step, **guards** that roll back at once
(error rate confidently above control's by more than a margin, p99 latency above a ratio of control's, shadow
agreement below a floor) and **gates** that must hold before the next step (accuracy or mean reward not worse
than control's by more than a margin, by the always-valid test, when such a margin is set). The last step,
100, makes the candidate ``production`` and clears the split. Ramps keep cohorts: routing keys are placed by a
hash that does not depend on weights, so a key that reached the candidate stays there while its weight grows.

Exactly one controller acts across all replicas: each replica's controller takes or renews a lease row every
``rollout_interval_s``; only the holder evaluates, and a holder that dies is replaced once its lease expires
(``rollout_lease_s``). Every transition is conditional on the rollout still being where the controller read
it, and is audited with the evidence it was decided on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from registry_db.errors import Conflict, ModelportError
from registry_db.repository import Registry
from registry_db.repository.rollouts import RolloutRecord
from service.background import cancel_and_wait
from service.errors import InvalidInput
from service.experiments.fleet import FleetStats, VersionFigures, as_served, compare
from service.experiments.sequential import Comparison
from service.inference.routing import PRODUCTION_ALIAS
from service.management.operations import RoutingOperations
from service.observability.metrics import Metrics

__all__ = ("Decision", "RolloutController", "RolloutOperations", "decide")

_log = structlog.get_logger(__name__)
LEASE_NAME = "rollout-controller"


@dataclass(frozen=True, slots=True)
class Decision:
    action: str
    """``hold`` (wait), ``advance``, ``promote`` or ``rollback``."""
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


def _evidence(candidate: VersionFigures, control: VersionFigures, found: dict[str, Comparison]) -> dict[str, Any]:
    def brief(f: VersionFigures) -> dict[str, Any]:
        s = f.counters.summary()
        out = {"requests": s["requests"], "errors": s["errors"], "error_rate": s["error_rate"]}
        out["latency_p99_ms"] = s["latency_ms"]["p99"]
        out["feedback"] = f.feedback.summary()
        if not f.counters.shadow.empty:
            out["shadow"] = f.counters.shadow.summary()
        return out

    return {
        "candidate": brief(candidate),
        "control": brief(control),
        "comparison": {name: c.as_dict() for name, c in found.items()},
    }


def decide(
    plan: dict[str, Any], rollout: RolloutRecord, candidate: VersionFigures, control: VersionFigures, *, alpha: float
) -> Decision:
    """What the controller does now with ``rollout`` given the figures since its step began (pure)."""
    shadow_stage = rollout.weight == 0
    seen = as_served(candidate) if shadow_stage else candidate
    found = compare(control, seen, alpha=alpha)
    evidence = _evidence(candidate, control, found)
    guards = plan["guards"]
    gates = plan["gates"]
    errors = found["error_rate"]
    if errors.is_worse_by(guards["max_error_rate_increase"]):
        low = errors.interval[0] if errors.interval else None
        return Decision(
            "rollback",
            f"error rate {errors.arm:.4f} vs control {errors.control:.4f}: higher by at least {low:.4f} "
            f"(always-valid {1 - alpha:.0%} interval), more than the allowed {guards['max_error_rate_increase']}",
            evidence,
        )
    min_samples = int(plan["min_samples"])
    c_p99, a_p99 = control.counters.latency.percentiles(0.99)[0], seen.counters.latency.percentiles(0.99)[0]
    ratio = guards.get("max_latency_ratio")
    if (
        ratio is not None
        and c_p99
        and a_p99
        and min(control.counters.latency.count, seen.counters.latency.count) >= min_samples
        and a_p99 > ratio * c_p99
    ):
        return Decision("rollback", f"p99 latency {a_p99} ms is over {ratio}x control's {c_p99} ms", evidence)
    shadow = candidate.counters.shadow
    floor = guards.get("min_shadow_agreement")
    if floor is not None and shadow.compared >= min_samples and shadow.agreed / shadow.compared < floor:
        return Decision(
            "rollback",
            f"shadow agreement {shadow.agreed / shadow.compared:.4f} with the primary is below {floor}",
            evidence,
        )
    age_s = time.time() - rollout.step_started_at.timestamp()
    served = shadow.requests if shadow_stage else candidate.counters.requests
    waiting: list[str] = []
    if age_s < float(plan["hold_s"]):
        waiting.append(f"held {age_s:.0f} s of {plan['hold_s']} s")
    if served < min_samples:
        waiting.append(f"{served} of {min_samples} samples")
    for metric, margin_key in (("accuracy", "accuracy_margin"), ("reward", "reward_margin")):
        margin = gates.get(margin_key)
        if margin is None:
            continue
        comparison = found.get(metric)
        if comparison is None or not comparison.is_not_worse_by(float(margin)):
            shown = comparison.as_dict()["interval"] if comparison is not None else "no feedback yet"
            waiting.append(f"{metric} not yet shown within {margin} of control (interval {shown})")
    if waiting:
        max_step_s = plan.get("max_step_s")
        if max_step_s is not None and age_s > float(max_step_s):
            return Decision("rollback", f"gates did not hold within {max_step_s} s: " + "; ".join(waiting), evidence)
        return Decision("hold", "; ".join(waiting), evidence)
    steps: list[int] = plan["steps"]
    if steps[rollout.step + 1] >= 100:
        return Decision("promote", f"every gate held at {rollout.weight} %: promoting", evidence)
    return Decision("advance", f"every gate held at {rollout.weight} %: on to {steps[rollout.step + 1]} %", evidence)


class RolloutOperations:
    """Start, step, finish and abort rollouts; shared by the admin API, the CLI and the controller."""

    def __init__(self, registry: Registry, routing: RoutingOperations) -> None:
        self._registry = registry
        self._routing = routing

    async def start(
        self, model: str, candidate: str, control: str | None, plan: dict[str, Any], *, actor: str
    ) -> RolloutRecord:
        """Record the rollout and route its first step; a step the registry refuses removes the rollout again."""
        if control is None:
            aliases = {a.alias: a.version for a in await self._registry.routing.list_aliases(model)}
            control = aliases.get(PRODUCTION_ALIAS)
            if control is None:
                raise InvalidInput(f"model '{model}' has no 'production' alias: name the control version")
        if candidate == control:
            raise InvalidInput(f"the candidate and the control are both version '{candidate}'")
        for version in (candidate, control):
            record = await self._registry.catalog.get_version(model, version)
            if record.status != "active":
                raise InvalidInput(f"version '{version}' of '{model}' is archived")
        rollout = await self._registry.rollouts.create(model, candidate, control, plan, actor=actor)
        try:
            await self.route_step(rollout, 0, actor=actor)
        except ModelportError as exc:
            await self._registry.rollouts.transition(
                rollout, actor=actor, decision={"action": "rollback", "reason": exc.message}, state="rolled_back",
                reason=f"could not route the first step: {exc.message}",
            )  # fmt: skip
            raise
        return rollout

    async def route_step(self, rollout: RolloutRecord, step: int, *, actor: str) -> None:
        weight = int(rollout.plan["steps"][step])
        if weight == 0:
            await self._routing.set_traffic(
                rollout.model, [(rollout.control, 100)], actor=actor, shadow=(rollout.candidate, 100)
            )
        else:
            splits = [(rollout.control, 100 - weight), (rollout.candidate, weight)]
            await self._routing.set_traffic(rollout.model, splits, actor=actor)

    async def promote(self, rollout: RolloutRecord, *, actor: str) -> None:
        await self._routing.promote(rollout.model, PRODUCTION_ALIAS, rollout.candidate, actor=actor)
        await self._routing.clear_traffic(rollout.model, actor=actor)

    async def restore(self, rollout: RolloutRecord, *, actor: str) -> None:
        """Back to the control alone: production -> control, no split, no shadow."""
        await self._routing.promote(rollout.model, PRODUCTION_ALIAS, rollout.control, actor=actor)
        await self._routing.clear_traffic(rollout.model, actor=actor)

    async def abort(self, model: str, rollout_id: int, *, actor: str, reason: str = "aborted") -> RolloutRecord:
        rollout = await self._registry.rollouts.get(model, rollout_id)
        if rollout.state != "running":
            raise Conflict(f"rollout {rollout_id} of '{model}' already ended: {rollout.state}")
        ended = await self._registry.rollouts.transition(
            rollout, actor=actor, decision={"action": "abort", "reason": reason}, state="aborted", reason=reason
        )
        if ended is None:
            raise Conflict(f"rollout {rollout_id} of '{model}' changed while aborting it: look again")
        # after the row: from here on no controller touches the routing of this rollout
        await self.restore(rollout, actor=actor)
        return ended

    async def apply(self, rollout: RolloutRecord, decision: Decision, *, actor: str) -> RolloutRecord | None:
        """Carry out a controller decision: routing first, then the rollout's row (conditional on its state and
        step). Each routing change is idempotent, so a controller that dies between the two leaves a rollout
        that the next controller decides, and routes, the same way again. None when the row had moved on."""
        entry = {"action": decision.action, "reason": decision.reason, "evidence": decision.evidence}
        if decision.action == "advance":
            step = rollout.step + 1
            await self.route_step(rollout, step, actor=actor)
            return await self._registry.rollouts.transition(
                rollout, actor=actor, decision={**entry, "weight": rollout.plan["steps"][step]}, step=step
            )
        if decision.action == "promote":
            await self.promote(rollout, actor=actor)
            return await self._registry.rollouts.transition(
                rollout, actor=actor, decision=entry, state="promoted", step=len(rollout.plan["steps"]) - 1,
                reason=decision.reason,
            )  # fmt: skip
        if decision.action == "rollback":
            await self.restore(rollout, actor=actor)
            return await self._registry.rollouts.transition(
                rollout, actor=actor, decision=entry, state="rolled_back", reason=decision.reason
            )
        return rollout


class RolloutController:
    """Every replica runs one; only the lease holder acts."""

    def __init__(
        self,
        *,
        registry: Registry,
        operations: RolloutOperations,
        fleet: FleetStats,
        metrics: Metrics,
        holder: str,
        interval_s: float,
        lease_s: float,
    ) -> None:
        self._registry = registry
        self._operations = operations
        self._fleet = fleet
        self._metrics = metrics
        self.holder = holder
        self._interval_s = interval_s
        self._lease_s = lease_s
        self._task: asyncio.Task[None] | None = None
        self.leading = False

    async def tick(self) -> None:
        """One round: hold the lease, then evaluate every running rollout once."""
        term = await self._registry.rollouts.hold_lease(LEASE_NAME, self.holder, self._lease_s)
        if term is None:
            if self.leading:
                _log.info("rollout_controller_follower", holder=self.holder)
            self.leading = False
            return
        if not self.leading:
            _log.info("rollout_controller_leader", holder=self.holder, term=term)
        self.leading = True
        deadline = time.monotonic() + self._lease_s / 2
        for rollout in await self._registry.rollouts.list(running_only=True):
            if time.monotonic() > deadline:
                break  # renew before doing more: another replica may take over an expired lease
            await self._evaluate(rollout)

    async def _evaluate(self, rollout: RolloutRecord) -> None:
        since = int(rollout.step_started_at.timestamp())
        figures = await self._fleet.figures(rollout.model, since)
        candidate = figures.get(rollout.candidate, VersionFigures())
        control = figures.get(rollout.control, VersionFigures())
        decision = decide(rollout.plan, rollout, candidate, control, alpha=self._fleet.alpha)
        if decision.action == "hold":
            await self._registry.rollouts.note_check(
                rollout.id, {"at": time.time(), "waiting_for": decision.reason, "evidence": decision.evidence}
            )
            return
        actor = f"rollout-controller:{rollout.id}"
        moved = await self._operations.apply(rollout, decision, actor=actor)
        if moved is not None:
            self._metrics.rollout_transitions.labels(model=rollout.model, decision=decision.action).inc()
            _log.info("rollout_" + decision.action, model=rollout.model, rollout=rollout.id, reason=decision.reason)

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except ModelportError as exc:
                _log.warning("rollout_controller_failed", error=exc.message)
            except Exception:  # noqa: BLE001 - the controller must survive anything
                _log.exception("rollout_controller_crashed")
            await asyncio.sleep(self._interval_s)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self.leading:
            with contextlib.suppress(ModelportError):
                await self._registry.rollouts.release_lease(LEASE_NAME, self.holder)
