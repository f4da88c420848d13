"""``modelport rollout start|status|abort``: the rollout routes of the admin API, from the command line.

The CLI records the rollout and routes its first step with the same operations as the server (a candidate that
does not load is refused); the running servers' controller (one per fleet) does the rest.
"""

from __future__ import annotations

from typing import Any

import click
from pydantic import ValidationError

from registry_db.repository.rollouts import RolloutRecord
from service.cli._app import cli
from service.cli.registry_cmds import _actor, _emit_json, _fail, _routing_change, _run, _table

__all__ = ()


@cli.group()
def rollout() -> None:
    """Ramp a candidate version through weight steps; promoted or rolled back by the servers' controller."""


def _plan(**options: Any) -> Any:
    from service.schemas.rollouts import RolloutBody

    try:
        return RolloutBody.model_validate({k: v for k, v in options.items() if v is not None})
    except ValidationError as exc:
        _fail("; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'plan'}: {e['msg']}" for e in exc.errors()))


def _show(record: RolloutRecord, as_json: bool) -> None:
    if as_json:
        import msgspec

        from service.schemas.rollouts import RolloutOut

        _emit_json(msgspec.to_builtins(RolloutOut.of(record)))
        return
    steps = " -> ".join(f"[{w}]" if i == record.step else str(w) for i, w in enumerate(record.plan["steps"]))
    click.echo(f"rollout {record.id} of {record.model}: {record.candidate} vs {record.control}, {record.state}")
    click.echo(f"  steps {steps} (%)")
    if record.reason:
        click.echo(f"  reason: {record.reason}")
    if record.state == "running" and record.last_check:
        click.echo(f"  waiting for: {record.last_check.get('waiting_for')}")
    for decision in record.decisions:
        click.echo(f"  {decision.get('at', '')[:19]}  {decision['action']:<8} {decision.get('reason', '')}")


@rollout.command("start")
@click.argument("name")
@click.argument("candidate")
@click.option("--control", default=None, help="Version compared against (default: the production alias).")
@click.option("--steps", default="5,25,50,100", show_default=True, help="Candidate weights in %, 0 = shadow only.")
@click.option("--hold", "hold_s", type=int, default=None, help="Least seconds per step (default 300).")
@click.option("--min-samples", type=int, default=None, help="Least candidate calls per step (default 500).")
@click.option("--max-step", "max_step_s", type=int, default=None, help="Roll back when gates do not hold in time.")
@click.option("--max-error-increase", type=float, default=None, help="Guard: error-rate increase allowed.")
@click.option("--max-latency-ratio", type=float, default=None, help="Guard: p99 latency ratio allowed (default 2).")
@click.option("--min-shadow-agreement", type=float, default=None, help="Guard: least shadow agreement.")
@click.option("--accuracy-margin", type=float, default=None, help="Gate: accuracy not worse by more than this.")
@click.option("--reward-margin", type=float, default=None, help="Gate: mean reward not worse by more than this.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def start(name: str, candidate: str, control: str | None, steps: str, as_json: bool, **options: Any) -> None:
    """Start a rollout of version CANDIDATE of model NAME."""
    try:
        weights = [int(part) for part in steps.split(",") if part.strip()]
    except ValueError:
        _fail(f"--steps: expected comma-separated integers, got {steps!r}")
    guards = {
        "max_error_rate_increase": options.pop("max_error_increase"),
        "max_latency_ratio": options.pop("max_latency_ratio"),
        "min_shadow_agreement": options.pop("min_shadow_agreement"),
    }
    gates = {"accuracy_margin": options.pop("accuracy_margin"), "reward_margin": options.pop("reward_margin")}
    body = _plan(
        candidate=candidate,
        control=control,
        steps=weights,
        guards={k: v for k, v in guards.items() if v is not None},
        gates={k: v for k, v in gates.items() if v is not None},
        **options,
    )

    async def change(operations: Any) -> RolloutRecord:
        from service.experiments.rollouts import RolloutOperations

        rollouts = RolloutOperations(operations.registry, operations)
        return await rollouts.start(name, body.candidate, body.control, body.plan(), actor=_actor())

    _show(_routing_change(change), as_json)


@rollout.command("status")
@click.argument("name")
@click.argument("rollout_id", type=int, required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(name: str, rollout_id: int | None, as_json: bool) -> None:
    """The rollouts of model NAME (newest first), or one with its decisions."""

    async def work(context: Any) -> Any:
        if rollout_id is not None:
            return await context.registry.rollouts.get(name, rollout_id)
        await context.registry.catalog.get_model(name)
        return await context.registry.rollouts.list(name)

    found = _run(work)
    if isinstance(found, RolloutRecord):
        _show(found, as_json)
    elif as_json:
        import msgspec

        from service.schemas.rollouts import RolloutOut

        _emit_json([msgspec.to_builtins(RolloutOut.of(r)) for r in found])
    else:
        _table(
            ("ID", "CANDIDATE", "CONTROL", "STATE", "WEIGHT", "REASON"),
            [(r.id, r.candidate, r.control, r.state, r.weight, r.reason[:60]) for r in found],
        )


@rollout.command("abort")
@click.argument("name")
@click.argument("rollout_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def abort(name: str, rollout_id: int, as_json: bool) -> None:
    """Abort a running rollout: production stays (or goes back to) the control, the split is cleared."""

    async def change(operations: Any) -> RolloutRecord:
        from service.experiments.rollouts import RolloutOperations

        rollouts = RolloutOperations(operations.registry, operations)
        return await rollouts.abort(name, rollout_id, actor=_actor())

    _show(_routing_change(change), as_json)
