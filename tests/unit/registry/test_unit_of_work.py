"""The unit of work every repository shares: audit rows, one generation bump per routing change, rollback on
refusal, bounded retries of transient races. On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy.exc as sa_exc
from sqlalchemy import func, select

from registry_db.errors import Conflict, InvalidName, NotFound
from registry_db.models import AuditEntry, RegistryState
from registry_db.repository import Registry
from registry_db.repository.unit_of_work import Transaction, UnitOfWork


async def generation(uow: UnitOfWork) -> int:
    async def op(tx: Transaction) -> int:
        return int((await tx.session.execute(select(RegistryState.generation))).scalar_one())

    return await uow.read(op)


async def audit_count(uow: UnitOfWork) -> int:
    async def op(tx: Transaction) -> int:
        return int((await tx.session.execute(select(func.count()).select_from(AuditEntry))).scalar_one())

    return await uow.read(op)


@pytest.fixture
def uow(registry: Registry) -> UnitOfWork:
    return UnitOfWork(registry.engine)


async def test_routing_changes_bump_once_per_transaction(uow: UnitOfWork) -> None:
    async def two_changes(tx: Transaction) -> str:
        tx.record("a.one", "t", None, 1, routing=True)
        tx.record("a.two", "t", 1, 2, routing=False)
        tx.record("a.three", "t", 2, 3, routing=True)
        return "done"

    assert await uow.write(two_changes, actor="tester", conflict="busy") == "done"
    assert (await generation(uow), await audit_count(uow)) == (1, 3)


async def test_changes_outside_routing_are_audited_without_a_bump(uow: UnitOfWork) -> None:
    async def key_change(tx: Transaction) -> None:
        tx.record("key.create", "key:k", None, {"scopes": ["read"]}, routing=False)

    async def nothing(tx: Transaction) -> None:
        return None

    await uow.write(key_change, actor="tester", conflict="busy")
    await uow.write(nothing, actor="tester", conflict="busy")
    assert (await generation(uow), await audit_count(uow)) == (0, 1)


async def test_a_refused_write_leaves_no_audit_row_and_no_bump(uow: UnitOfWork) -> None:
    async def refused(tx: Transaction) -> None:
        tx.record("alias.set", "m/production", None, "1", routing=True)
        await tx.session.flush()
        raise NotFound("no such version")

    with pytest.raises(NotFound, match="no such version"):
        await uow.write(refused, actor="tester", conflict="busy")
    assert (await generation(uow), await audit_count(uow)) == (0, 0)


async def test_transient_races_are_retried_then_reported_as_conflict(uow: UnitOfWork) -> None:
    attempts: list[int] = []

    async def always_loses(tx: Transaction) -> None:
        attempts.append(1)
        raise sa_exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed: models.name"))

    with pytest.raises(Conflict, match="^could not do it: try again$"):
        await uow.write(always_loses, actor="tester", conflict="could not do it: try again")
    assert len(attempts) == 8


async def test_a_lost_race_then_success_commits_once(uow: UnitOfWork) -> None:
    attempts: list[int] = []

    async def wins_second_time(tx: Transaction) -> int:
        attempts.append(1)
        tx.record("model.create", "m", None, {}, routing=True)
        if len(attempts) == 1:
            await tx.session.flush()
            raise sa_exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed: models.name"))
        return len(attempts)

    assert await uow.write(wins_second_time, actor="tester", conflict="busy") == 2
    assert (await generation(uow), await audit_count(uow)) == (1, 1)


@pytest.mark.parametrize("actor", ["", "x" * 1000, None])
async def test_writes_need_a_valid_actor_before_touching_the_database(uow: UnitOfWork, actor: Any) -> None:
    async def op(tx: Transaction) -> None:
        raise AssertionError("must not run")

    with pytest.raises(InvalidName):
        await uow.write(op, actor=actor, conflict="busy")


async def test_reads_cannot_record_changes(uow: UnitOfWork) -> None:
    async def sneaky(tx: Transaction) -> None:
        tx.record("model.create", "m", None, {}, routing=True)

    with pytest.raises(RuntimeError, match="read-only"):
        await uow.read(sneaky)
    assert (await generation(uow), await audit_count(uow)) == (0, 0)
