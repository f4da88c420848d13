"""Engines: SQLite pragmas and locking modes; the classification of driver errors into registry errors."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy.exc as sa_exc
from sqlalchemy import text

from registry_db.errors import Conflict, DatabaseUnavailable
from registry_db.migrate import upgrade_async
from registry_db.repository import Registry
from registry_db.session import READONLY, Transient, classify_db_error, create_engine


async def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one() == 1
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one() == 30_000
    finally:
        await engine.dispose()


async def test_sqlite_reads_proceed_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    await upgrade_async(url)
    registry = Registry(create_engine(url))
    writer_engine = create_engine(url)
    try:
        async with writer_engine.connect() as writer:
            await writer.execute(text("UPDATE registry_state SET generation = generation + 1"))  # BEGIN IMMEDIATE
            # readers use a deferred BEGIN: WAL lets them see the last commit without waiting for the writer
            assert await asyncio.wait_for(registry.routing.generation(), 5) == 0
            assert await asyncio.wait_for(registry.catalog.list_models(), 5) == []
            await writer.commit()
        assert await registry.routing.generation() == 1
    finally:
        await writer_engine.dispose()
        await registry.close()


async def test_sqlite_write_transactions_take_the_lock_at_begin(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    engine = create_engine(url, busy_timeout_ms=200)
    try:
        async with engine.connect() as first:
            await first.execute(text("SELECT 1"))  # IMMEDIATE: holds the write lock although it only read
            async with engine.connect() as second:
                with pytest.raises(sa_exc.OperationalError, match="locked"):
                    await second.execute(text("SELECT 1"))
            readonly = await engine.connect()
            try:
                await readonly.execution_options(**{READONLY: True})
                assert (await readonly.execute(text("SELECT 1"))).scalar_one() == 1
            finally:
                await readonly.close()
    finally:
        await engine.dispose()


def _dbapi_error(kind: type[sa_exc.DBAPIError], orig: Exception) -> sa_exc.DBAPIError:
    return kind("SELECT 1", {}, orig)


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"pg error {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            _dbapi_error(sa_exc.IntegrityError, sqlite3.IntegrityError("UNIQUE constraint failed: models.name")),
            Transient,
        ),
        (_dbapi_error(sa_exc.IntegrityError, _PgError("23505")), Transient),
        (_dbapi_error(sa_exc.DBAPIError, _PgError("40001")), Transient),
        (_dbapi_error(sa_exc.DBAPIError, _PgError("40P01")), Transient),
        (_dbapi_error(sa_exc.OperationalError, sqlite3.OperationalError("database is locked")), DatabaseUnavailable),
        (_dbapi_error(sa_exc.IntegrityError, _PgError("23503")), Conflict),
        (
            _dbapi_error(sa_exc.OperationalError, sqlite3.OperationalError("unable to open database file")),
            DatabaseUnavailable,
        ),
        (_dbapi_error(sa_exc.InterfaceError, _PgError("")), DatabaseUnavailable),
        (_dbapi_error(sa_exc.DBAPIError, _PgError("57P01")), DatabaseUnavailable),
        (_dbapi_error(sa_exc.DBAPIError, _PgError("3D000")), DatabaseUnavailable),
        (_dbapi_error(sa_exc.ProgrammingError, _PgError("42P01")), DatabaseUnavailable),
        (ConnectionRefusedError(111, "Connection refused"), DatabaseUnavailable),
        (TimeoutError(), DatabaseUnavailable),
        (sa_exc.TimeoutError("QueuePool limit reached"), DatabaseUnavailable),
    ],
)
def test_classify_db_error(error: BaseException, expected: type[BaseException]) -> None:
    assert isinstance(classify_db_error(error), expected)


@pytest.mark.parametrize(
    "error", [ValueError("bug"), _dbapi_error(sa_exc.ProgrammingError, _PgError("42601")), KeyError("x")]
)
def test_bugs_are_not_disguised(error: BaseException) -> None:
    assert classify_db_error(error) is None


async def test_a_database_that_accepts_and_never_answers_is_unavailable_within_the_timeout() -> None:
    """A black hole: the kernel completes the TCP handshake, nothing ever replies. The call must end as
    DatabaseUnavailable (503 upstream) after the connect timeout, not hang."""
    import socket
    import time

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)  # never accept(): connections sit in the backlog unanswered
    try:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{hole.getsockname()[1]}/test"
        registry = Registry(create_engine(url, connect_timeout_s=0.5, statement_timeout_s=0.5, pool_timeout=1))
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="unavailable"):
            await registry.catalog.list_models()
        assert time.monotonic() - started < 10  # bounded by the timeouts, far below any client's patience
        await registry.close()
    finally:
        hole.close()
