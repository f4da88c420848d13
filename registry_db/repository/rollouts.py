"""Rollouts (a candidate ramped through weight steps by the controller) and the leases that elect it.

Every transition of a rollout is written with its audit row in one transaction, and only if the rollout is
still where the writer last saw it (state and step), so two controllers that both believe they lead cannot
apply the same step twice. At most one rollout per model runs: a partial unique index, so concurrent starts
are refused by the database, not by a check that can race.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from registry_db.base import utcnow
from registry_db.errors import Conflict, NotFound
from registry_db.models import Lease, Rollout
from registry_db.repository.unit_of_work import Transaction, UnitOfWork
from registry_db.validation import validate_model_name, validate_version_label

__all__ = ("RolloutRecord", "RolloutsRepository")

RUNNING = "running"
ENDED = frozenset({"promoted", "rolled_back", "aborted"})


@dataclass(frozen=True, slots=True)
class RolloutRecord:
    id: int
    model: str
    candidate: str
    control: str
    state: str
    step: int
    plan: dict[str, Any]
    step_started_at: datetime
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    reason: str
    decisions: list[dict[str, Any]]
    last_check: dict[str, Any] | None
    created_by: str

    @property
    def weight(self) -> int:
        """The candidate's share of the split at the current step (0: shadow only)."""
        steps: list[int] = self.plan["steps"]
        return int(steps[self.step])


def _record(row: Rollout) -> RolloutRecord:
    return RolloutRecord(
        row.id,
        row.model,
        row.candidate,
        row.control,
        row.state,
        row.step,
        dict(row.plan),
        row.step_started_at,
        row.created_at,
        row.updated_at,
        row.ended_at,
        row.reason,
        list(row.decisions),
        dict(row.last_check) if row.last_check is not None else None,
        row.created_by,
    )


class RolloutsRepository:
    """Rollout rows and leases."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def create(
        self, model: str, candidate: str, control: str, plan: dict[str, Any], *, actor: str
    ) -> RolloutRecord:
        """A running rollout at step 0; Conflict when the model already has one running."""
        validate_model_name(model)
        validate_version_label(candidate)
        validate_version_label(control)

        async def op(tx: Transaction) -> RolloutRecord:
            running = select(Rollout.id).where(Rollout.model == model, Rollout.state == RUNNING)
            existing = (await tx.session.execute(running)).scalar_one_or_none()
            if existing is not None:
                raise Conflict(f"model '{model}' already has a running rollout ({existing}): abort it first")
            now = utcnow()
            decision = {"at": now.isoformat(), "action": "start", "step": 0, "weight": plan["steps"][0]}
            row = Rollout(
                model=model,
                candidate=candidate,
                control=control,
                state=RUNNING,
                step=0,
                plan=plan,
                step_started_at=now,
                created_at=now,
                updated_at=now,
                reason="",
                decisions=[decision],
                created_by=actor,
            )
            tx.session.add(row)
            await tx.session.flush()
            tx.record("rollout.start", model, None, {"id": row.id, "candidate": candidate, **plan}, routing=False)
            return _record(row)

        return await self._uow.write(op, actor=actor, conflict=f"model '{model}' already has a running rollout")

    async def get(self, model: str, rollout_id: int) -> RolloutRecord:
        validate_model_name(model)
        if not 0 < rollout_id < 1 << 63:
            raise NotFound(f"model '{model}' has no rollout {rollout_id}")

        async def op(tx: Transaction) -> RolloutRecord:
            row = await tx.session.get(Rollout, rollout_id)
            if row is None or row.model != model:
                raise NotFound(f"model '{model}' has no rollout {rollout_id}")
            return _record(row)

        return await self._uow.read(op)

    async def list(self, model: str | None = None, *, running_only: bool = False) -> list[RolloutRecord]:
        """Newest first."""
        if model is not None:
            validate_model_name(model)

        async def op(tx: Transaction) -> list[RolloutRecord]:
            query = select(Rollout).order_by(Rollout.id.desc()).limit(200)
            if model is not None:
                query = query.where(Rollout.model == model)
            if running_only:
                query = query.where(Rollout.state == RUNNING)
            return [_record(row) for row in (await tx.session.execute(query)).scalars()]

        return await self._uow.read(op)

    async def transition(
        self,
        current: RolloutRecord,
        *,
        actor: str,
        decision: dict[str, Any],
        state: str = RUNNING,
        step: int | None = None,
        reason: str = "",
    ) -> RolloutRecord | None:
        """Move ``current`` to ``state`` / ``step``, appending ``decision`` (audited); None when another writer
        moved it first (the caller re-reads)."""

        async def op(tx: Transaction) -> RolloutRecord | None:
            now = utcnow()
            values: dict[str, Any] = {
                "state": state,
                "decisions": [*current.decisions, {"at": now.isoformat(), **decision}],
                "updated_at": now,
                "reason": reason or current.reason,
            }
            if step is not None and step != current.step:
                values["step"] = step
                values["step_started_at"] = now
            if state in ENDED:
                values["ended_at"] = now
            changed = await tx.session.execute(
                update(Rollout)
                .where(Rollout.id == current.id, Rollout.state == RUNNING, Rollout.step == current.step)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                return None
            tx.record(f"rollout.{decision['action']}", current.model, {"id": current.id, "step": current.step},
                      {"id": current.id, "state": state, "step": step if step is not None else current.step,
                       "reason": reason}, routing=False)  # fmt: skip
            row = await tx.session.get(Rollout, current.id, populate_existing=True)
            return _record(row) if row is not None else None

        return await self._uow.write(op, actor=actor, conflict="the rollout changed concurrently")

    async def note_check(self, rollout_id: int, check: dict[str, Any]) -> None:
        """Overwrite the latest evaluation of a running rollout (not audited: nothing changed)."""

        async def op(tx: Transaction) -> None:
            await tx.session.execute(
                update(Rollout)
                .where(Rollout.id == rollout_id, Rollout.state == RUNNING)
                .values(last_check=check)
                .execution_options(synchronize_session=False)
            )

        await self._uow.unaudited(op)

    # -- leases ---------------------------------------------------------------------------------------
    async def hold_lease(self, name: str, holder: str, ttl_s: float) -> int | None:
        """Take or renew lease ``name`` for ``ttl_s``; its term (bumped on every change of holder) if this
        holder has it now, else None (someone else holds an unexpired lease)."""

        async def op(tx: Transaction) -> int | None:
            now = utcnow()
            query = select(Lease).where(Lease.name == name)
            if tx.postgres:
                query = query.with_for_update()
            row = (await tx.session.execute(query)).scalar_one_or_none()
            expires = now + timedelta(seconds=ttl_s)
            if row is None:
                tx.session.add(Lease(name=name, holder=holder, expires_at=expires, term=1))
                await tx.session.flush()
                return 1
            if row.holder != holder and row.expires_at > now:
                return None
            if row.holder != holder:
                row.term += 1
                row.holder = holder
            row.expires_at = expires
            await tx.session.flush()
            return int(row.term)

        return await self._uow.unaudited(op)

    async def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up at once (a clean shutdown), so another replica need not wait for it to expire."""

        async def op(tx: Transaction) -> None:
            await tx.session.execute(
                update(Lease)
                .where(Lease.name == name, Lease.holder == holder)
                .values(expires_at=utcnow() - timedelta(seconds=1))
                .execution_options(synchronize_session=False)
            )

        await self._uow.unaudited(op)

    async def lease_holder(self, name: str) -> tuple[str, datetime] | None:
        async def op(tx: Transaction) -> tuple[str, datetime] | None:
            row = (await tx.session.execute(select(Lease).where(Lease.name == name))).scalar_one_or_none()
            return (row.holder, row.expires_at) if row is not None else None

        return await self._uow.read(op)
