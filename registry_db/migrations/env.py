"""Async Alembic environment: registry_db's metadata only; batch mode on SQLite; types compared.

Used two ways: from code (``registry_db.migrate``, which hands over an open connection in
``config.attributes["connection"]``), and by the ``alembic`` command with the repository's ``alembic.ini``
(the URL then comes from ``config.attributes["url"]``, ``sqlalchemy.url`` or modelport's settings).

On PostgreSQL the whole run holds a transaction-scoped advisory lock, so replicas that start together
upgrade one after the other; SQLite serialises writers by itself (``BEGIN IMMEDIATE``), and the whole upgrade is one
transaction on both.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

import registry_db.models  # noqa: F401 - registers the tables on Base.metadata
from registry_db.base import Base
from registry_db.session import create_engine

config = context.config
target_metadata = Base.metadata
MIGRATION_LOCK_KEY = 0x6D6F64656C706F72  # "modelpor": pg_advisory_xact_lock key for schema changes


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        from service.settings import Settings

        url = Settings().resolved_database_url
    return str(url)


def _configure(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # SQLite can run DDL in a transaction too; without this Alembic commits after each revision, and a
        # second process waiting on the write lock reads the schema half-way and replays a revision (seen as
        # "table leases already exists" with three processes upgrading a fresh file together)
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
    else:
        asyncio.run(_run_async())


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
