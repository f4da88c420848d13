"""Alembic from code: ``modelport db upgrade|current`` and the server's start-up check.

The scripts live in the repository's top-level ``alembic/`` (DESIGN §1); installed images copy that folder
next to the code (see the Containerfile), and ``MODELPORT_ALEMBIC_DIR`` may point elsewhere.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from alembic import command
from registry_db.session import create_engine

__all__ = ("alembic_config", "current", "current_async", "head_revision", "upgrade", "upgrade_async")


def _script_dir() -> Path:
    override = os.environ.get("MODELPORT_ALEMBIC_DIR")
    candidates = [Path(override)] if override else []
    candidates += [Path(__file__).resolve().parents[1] / "alembic", Path.cwd() / "alembic"]
    for candidate in candidates:
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("alembic scripts not found; set MODELPORT_ALEMBIC_DIR to the repository's alembic/")


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_script_dir()))
    if url:
        cfg.attributes["url"] = url
    return cfg


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    return heads[0] if len(heads) == 1 else ",".join(sorted(heads))


async def upgrade_async(url: str, revision: str = "head") -> None:
    """Upgrade the schema (a no-op at head). Runs Alembic on one async connection."""
    cfg = alembic_config(url)
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:

            def run(sync_connection: Connection) -> None:
                cfg.attributes["connection"] = sync_connection
                command.upgrade(cfg, revision)

            await connection.run_sync(run)
            await connection.commit()
    finally:
        await engine.dispose()


async def downgrade_async(url: str, revision: str = "base") -> None:
    cfg = alembic_config(url)
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:

            def run(sync_connection: Connection) -> None:
                cfg.attributes["connection"] = sync_connection
                command.downgrade(cfg, revision)

            await connection.run_sync(run)
            await connection.commit()
    finally:
        await engine.dispose()


async def current_async(url: str) -> str | None:
    """The revision the database is at (None when never migrated)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
    finally:
        await engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    asyncio.run(upgrade_async(url, revision))


def current(url: str) -> str | None:
    return asyncio.run(current_async(url))
