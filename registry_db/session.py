"""Async engines for SQLite (aiosqlite, WAL) and PostgreSQL (asyncpg), and the one place DB errors are classified.

SQLite writers take the write lock at ``BEGIN IMMEDIATE`` so concurrent writers queue on the busy timeout
instead of failing when a read lock would be upgraded; read-only transactions (execution option
``modelport_readonly``) use a plain deferred ``BEGIN`` and never block anyone in WAL mode.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy.exc as sa_exc
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from registry_db.errors import Conflict, DatabaseUnavailable

__all__ = (
    "CONNECT_TIMEOUT_S",
    "READONLY",
    "STATEMENT_TIMEOUT_S",
    "Transient",
    "classify_db_error",
    "create_engine",
    "is_sqlite",
)

READONLY = "modelport_readonly"
"""Execution option marking a read-only transaction (deferred ``BEGIN`` on SQLite)."""

_BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_S = 5.0
"""How long to wait for PostgreSQL to accept a connection before the call is answered 503."""
STATEMENT_TIMEOUT_S = 30.0
"""How long one statement may wait for PostgreSQL's answer (client side: also bounds a server gone silent)."""
# PostgreSQL SQLSTATEs: a retry can succeed (serialization failure, deadlock, lock timeout, unique race)
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03", "23505"})
# PostgreSQL SQLSTATE classes meaning "cannot talk to the database": connection, shutdown, auth, no such db
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "57P", "28", "3D", "53")
_MISSING_SCHEMA_SQLSTATES = frozenset({"42P01"})


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(
    url: str,
    *,
    busy_timeout_ms: int = _BUSY_TIMEOUT_MS,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    statement_timeout_s: float = STATEMENT_TIMEOUT_S,
    **kwargs: Any,
) -> AsyncEngine:
    """An engine with sane pool settings; SQLite gets WAL, foreign keys, a busy timeout and IMMEDIATE writes.

    PostgreSQL connections time out while connecting (``connect_timeout_s``) and per statement
    (``statement_timeout_s``, enforced by the client, so a database that accepts connections and then says
    nothing is a bounded wait, answered 503, not a hang). ``kwargs`` go to
    :func:`~sqlalchemy.ext.asyncio.create_async_engine` and win over the defaults here.
    """
    if not is_sqlite(url):
        options: dict[str, Any] = {
            "pool_pre_ping": True,
            "pool_size": 5,
            "max_overflow": 5,
            "pool_timeout": 10,
            "connect_args": {"timeout": connect_timeout_s, "command_timeout": statement_timeout_s},
        }
        return create_async_engine(url, **{**options, **kwargs})

    engine = create_async_engine(url, **{"connect_args": {"timeout": busy_timeout_ms / 1000}, **kwargs})

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # let SQLAlchemy emit BEGIN itself (the documented recipe for SQLite locking and transactional DDL)
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READONLY) else "BEGIN IMMEDIATE")

    return engine


class Transient(Exception):
    """A failure a retry of the whole transaction can cure: a lost unique race, serialization or deadlock."""


def _sqlstate(exc: sa_exc.DBAPIError) -> str:
    return str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")


def classify_db_error(exc: BaseException) -> BaseException | None:
    """The registry error that ``exc`` (raised by the driver or SQLAlchemy) stands for, or None if it is a bug.

    Returns a :class:`Transient` for races worth retrying, :class:`DatabaseUnavailable` for connectivity and
    missing-schema problems, :class:`Conflict` for other constraint violations. Called where transactions end
    (the repository, migrations).
    """
    if isinstance(exc, sa_exc.DBAPIError):
        state = _sqlstate(exc)
        message = str(exc.orig).lower()
        if state in _RETRYABLE_SQLSTATES or "unique constraint failed" in message:
            return Transient(str(exc.orig))
        if "database is locked" in message or "database table is locked" in message:
            # writers already waited the whole busy timeout: report it rather than queue again
            return DatabaseUnavailable("registry database is busy: another writer held the lock too long")
        if state in _MISSING_SCHEMA_SQLSTATES or "no such table" in message:
            return DatabaseUnavailable("registry schema is missing or outdated: run 'modelport db upgrade'")
        if (
            exc.connection_invalidated
            or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
            or state.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES)
        ):
            return DatabaseUnavailable(f"registry database unavailable: {_short(exc.orig)}")
        if isinstance(exc, sa_exc.IntegrityError):
            return Conflict(f"the change violates a registry constraint: {_short(exc.orig)}")
        return None
    if isinstance(exc, sa_exc.TimeoutError | OSError | ConnectionError):
        return DatabaseUnavailable(f"registry database unavailable: {_short(exc)}")
    if _is_asyncpg_connect_error(exc):
        return DatabaseUnavailable(f"registry database unavailable: {_short(exc)}")
    return None


def _short(exc: BaseException | None) -> str:
    text = str(exc).strip().splitlines()[0] if exc is not None and str(exc).strip() else ""
    name = type(exc).__name__ if exc is not None else "error"
    return f"{name}: {text[:200]}" if text else name


def _is_asyncpg_connect_error(exc: BaseException) -> bool:
    """asyncpg raises its own errors while connecting (before SQLAlchemy can wrap them)."""
    module = type(exc).__module__
    if not module.startswith("asyncpg"):
        return False
    state = str(getattr(exc, "sqlstate", "") or "")
    return state.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES) or "Connection" in type(exc).__name__
