"""The registry as a whole: what callers see when the database is unreachable or not migrated."""

from __future__ import annotations

import asyncio
import threading

import pytest

from registry_db.errors import DatabaseUnavailable
from registry_db.repository import (
    ApiKeyRepository,
    AuditRepository,
    CatalogRepository,
    Registry,
    RoutingRepository,
)
from registry_db.session import create_engine
from tests.helpers.registry import version_kwargs


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:////nonexistent-dir-for-modelport-tests/registry.db",
        "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere",
    ],
)
async def test_unreachable_database_is_database_unavailable(url: str) -> None:
    registry = Registry(create_engine(url, **({"pool_timeout": 2} if "postgresql" in url else {})))
    try:
        with pytest.raises(DatabaseUnavailable):
            await registry.ping()
        with pytest.raises(DatabaseUnavailable):
            await registry.catalog.add_version("m", version=None, **version_kwargs())
    finally:
        await registry.close()
        # aiosqlite stops the worker thread of a failed connect without awaiting it; let it finish while this
        # test's event loop is still open (else it reports "Event loop is closed" into a later test)
        for thread in threading.enumerate():
            if "_connection_worker_thread" in thread.name:
                await asyncio.to_thread(thread.join, 10)


async def test_unmigrated_database_says_to_upgrade(db_url: str) -> None:
    registry = Registry(create_engine(db_url))
    try:
        with pytest.raises(DatabaseUnavailable, match="modelport db upgrade"):
            await registry.catalog.list_models()
    finally:
        await registry.close()


async def test_one_repository_per_aggregate_and_a_ping(registry: Registry) -> None:
    assert isinstance(registry.catalog, CatalogRepository) and isinstance(registry.routing, RoutingRepository)
    assert isinstance(registry.keys, ApiKeyRepository) and isinstance(registry.audit, AuditRepository)
    await registry.ping()
