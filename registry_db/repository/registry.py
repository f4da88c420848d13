"""The registry: one repository per aggregate over one shared unit of work, built from an engine."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from registry_db.models import RegistryState
from registry_db.repository.audit import AuditRepository
from registry_db.repository.catalog import CatalogRepository
from registry_db.repository.experiments import ExperimentsRepository
from registry_db.repository.keys import ApiKeyRepository
from registry_db.repository.rollouts import RolloutsRepository
from registry_db.repository.routing import RoutingRepository
from registry_db.repository.unit_of_work import Transaction, UnitOfWork
from registry_db.session import create_engine

__all__ = ("Registry",)


class Registry:
    """Typed, transactional access to the registry database; every call returns immutable records.

    One instance per process; safe to share between tasks (each call takes its own pooled connection).

    Attributes:
        catalog: models and versions (register, look up, archive).
        routing: aliases, traffic splits, the routing generation and snapshot.
        keys: API keys (create, authenticate, revoke, list).
        audit: the audit log every write above appends to.
        experiments: statistics buckets, the prediction log and outcomes (measurements, not audited).
        rollouts: rollouts the controller drives, and the lease that elects the controller.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._uow = UnitOfWork(engine)
        self.catalog = CatalogRepository(self._uow)
        self.routing = RoutingRepository(self._uow)
        self.keys = ApiKeyRepository(self._uow)
        self.audit = AuditRepository(self._uow)
        self.experiments = ExperimentsRepository(self._uow)
        self.rollouts = RolloutsRepository(self._uow)

    @classmethod
    def from_url(cls, url: str) -> Registry:
        """A registry on a new engine for ``url`` (the schema must already be migrated)."""
        return cls(create_engine(url))

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        """Raise :class:`DatabaseUnavailable` unless the database answers (readiness checks)."""

        async def op(tx: Transaction) -> None:
            await tx.session.execute(select(func.count()).select_from(RegistryState))

        await self._uow.read(op)
