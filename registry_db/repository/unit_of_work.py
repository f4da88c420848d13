"""The unit of work every repository shares: what each read and write needs, written once.

A call runs its operation in one transaction. A write also validates its actor, writes the audit rows the
operation records (actor, action, target, before/after) and, when one of those changes affects routing,
bumps ``registry_state.generation`` (plus ``NOTIFY`` on PostgreSQL) before the commit, so workers never see
a change without its generation or its audit row. Transient races are retried with jitter and a rollback;
driver errors are mapped to registry errors by :func:`registry_db.session.classify_db_error`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from registry_db.base import utcnow
from registry_db.errors import Conflict, ModelportError
from registry_db.models import AuditEntry, RegistryState
from registry_db.session import READONLY, Transient, classify_db_error
from registry_db.validation import validate_actor

__all__ = ("NOTIFY_CHANNEL", "Transaction", "UnitOfWork")

NOTIFY_CHANNEL = "modelport_registry"
"""PostgreSQL channel notified with the new generation on every routing change (see ``registry_db.notify``)."""
_ATTEMPTS = 8
_T = TypeVar("_T")


class Transaction:
    """One attempt of one call: the session, the dialect, and the changes recorded for the audit log."""

    def __init__(self, session: AsyncSession, *, postgres: bool, actor: str | None) -> None:
        self.session = session
        self.postgres = postgres
        self._actor = actor
        """Who makes the changes; None in a read-only transaction."""
        self.routing_changed = False

    def record(self, action: str, target: str, before: Any, after: Any, *, routing: bool) -> None:
        """Write the audit row of a change; ``routing=True`` when it changes what unversioned calls reach
        (then the unit of work bumps the generation once before committing)."""
        if self._actor is None:
            raise RuntimeError("a read-only transaction cannot record changes")  # a repository bug, not input
        self.session.add(
            AuditEntry(
                at=utcnow(),
                actor=self._actor,
                action=action,
                target=target,
                details={"before": before, "after": after},
            )
        )
        self.routing_changed = self.routing_changed or routing


_Op = Callable[[Transaction], Awaitable[_T]]


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(random.uniform(0, min(0.25, 0.004 * 2**attempt)))  # noqa: S311 - jitter, not crypto


class UnitOfWork:
    """Runs repository operations in transactions on one engine; shared by every repository of a registry."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.postgres = engine.dialect.name == "postgresql"

    async def read(self, op: _Op[_T], *, snapshot: bool = False) -> _T:
        """Run ``op`` in a read-only transaction (``snapshot``: ``REPEATABLE READ`` on PostgreSQL; SQLite's
        WAL read transaction is a snapshot already)."""
        options: dict[str, Any] = {READONLY: True}
        if self.postgres:
            options["postgresql_readonly"] = True
            if snapshot:
                options["isolation_level"] = "REPEATABLE READ"
        return await self._run(op, options, actor=None, conflict="")

    async def write(self, op: _Op[_T], *, actor: str, conflict: str) -> _T:
        """Run ``op`` in a write transaction on behalf of ``actor``; :class:`Conflict` with ``conflict`` as the
        message once transient races have used up the retries."""
        validate_actor(actor)
        return await self._run(op, {}, actor=actor, conflict=conflict)

    async def unaudited(self, op: _Op[_T]) -> _T:
        """Run ``op`` in a write transaction that changes no registry state anyone audits (measurements:
        statistics, the prediction log, leases); transient races are retried like any write."""
        return await self._run(op, {}, actor=None, conflict="")

    async def _run(self, op: _Op[_T], options: dict[str, Any], *, actor: str | None, conflict: str) -> _T:
        """One transaction per attempt; domain errors raised by ``op`` roll back and propagate unchanged.

        Only transient failures (a lost unique race, serialization failure, deadlock, SQLite lock) are retried,
        with jitter, at most ``_ATTEMPTS`` times.
        """
        last: BaseException | None = None
        for attempt in range(_ATTEMPTS):
            try:
                async with self._sessions() as session, session.begin():
                    await session.connection(execution_options=options)
                    tx = Transaction(session, postgres=self.postgres, actor=actor)
                    result = await op(tx)
                    if tx.routing_changed:
                        await self._bump(session)
                    return result
            except ModelportError:
                raise
            except Exception as exc:
                mapped = classify_db_error(exc)
                if mapped is None:
                    raise
                if not isinstance(mapped, Transient):
                    raise mapped from exc
                last = exc
                await _backoff(attempt)
        raise Conflict(conflict or "the registry is busy: too many concurrent writers, try again") from last

    async def _bump(self, s: AsyncSession) -> None:
        """Advance the routing generation in this transaction; PostgreSQL also notifies listeners on commit."""
        generation = (
            await s.execute(
                update(RegistryState)
                .where(RegistryState.id == 1)
                .values(generation=RegistryState.generation + 1)
                .returning(RegistryState.generation)
            )
        ).scalar_one()
        if self.postgres:
            await s.execute(
                text("SELECT pg_notify(:channel, :payload)"), {"channel": NOTIFY_CHANNEL, "payload": str(generation)}
            )
