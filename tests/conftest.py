"""Shared fixtures: settings in a temp dir, and a registry database parametrised over SQLite and PostgreSQL.

PostgreSQL comes from ``MODELPORT_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``); each
test gets a fresh database that is dropped afterwards. Where the server is not reachable the PostgreSQL
cases are skipped with the reason, never silently passed.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from registry_db.migrate import upgrade_async
from registry_db.repository import Registry
from registry_db.session import create_engine
from registry_db.store import ArtifactStore
from service.settings import Settings

PG_URL = os.environ.get("MODELPORT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _pg_admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(PG_URL), timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


_pg_error: str | None = None
_pg_checked = False


def pg_unavailable_reason() -> str | None:
    """Why PostgreSQL cannot be used here, or None when it can."""
    global _pg_checked, _pg_error
    if not _pg_checked:
        _pg_checked = True
        try:
            asyncio.run(_pg_admin("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means: skip with the reason
            _pg_error = f"PostgreSQL not reachable at {PG_URL}: {type(exc).__name__}: {exc}"
    return _pg_error


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A new empty PostgreSQL database (asyncpg URL), dropped after the test."""
    reason = pg_unavailable_reason()
    if reason:
        pytest.skip(reason)
    name = f"mp_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    base = PG_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL: SQLite in tmp_path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    return str(request.getfixturevalue("fresh_pg_url"))


@pytest.fixture
async def registry(db_url: str) -> AsyncIterator[Registry]:
    """A migrated registry on ``db_url``."""
    await upgrade_async(db_url)
    reg = Registry(create_engine(db_url))
    try:
        yield reg
    finally:
        await reg.close()


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts", max_bytes=10 * 1024 * 1024)


@pytest.fixture
def tmp_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]
