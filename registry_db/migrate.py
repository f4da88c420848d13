"""Alembic from code: ``modelport db upgrade|current``, the server's start-up check, and the tests.

The scripts ship inside the package (``registry_db/migrations``: ``env.py``, ``script.py.mako``,
``versions/``), so an installed wheel can migrate without a checkout; the repository's top-level
``alembic/`` is a symlink to the same folder and ``alembic.ini`` points there too.

Alembic itself is imported only to change the schema: the start-up check (``current_async``, ``head_revision``)
reads the version table with plain SQL and the head from the scripts' headers, so a server already at head never
loads it (about 10 MB of resident memory for the life of the process).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from registry_db.errors import DatabaseUnavailable
from registry_db.session import classify_db_error, create_engine

__all__ = (
    "SCRIPT_LOCATION",
    "alembic_config",
    "current",
    "current_async",
    "downgrade_async",
    "head_revision",
    "is_at_head_async",
    "upgrade",
    "upgrade_async",
)

SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"
_REVISION = re.compile(r'^revision: str = "([^"]+)"', re.M)
_DOWN_REVISION = re.compile(r'^down_revision: str \| None = (?:"([^"]+)"|None)', re.M)

if TYPE_CHECKING:
    from alembic.config import Config


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config for the packaged scripts; ``url`` is handed to ``env.py`` in memory, never logged."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    if url:
        cfg.attributes["url"] = url
    return cfg


@cache
def head_revision() -> str:
    """The newest revision in the scripts (several heads would be a bug, and are joined with commas), read from
    the headers every script carries (``revision: str = "..."``, ``down_revision: ...``), as Alembic reads them."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (SCRIPT_LOCATION / "versions").glob("*.py"):
        source = script.read_text(encoding="utf-8")
        found, down = _REVISION.search(source), _DOWN_REVISION.search(source)
        if found is None or down is None:
            raise RuntimeError(f"migration script {script.name} has no revision / down_revision header")
        revisions.add(found.group(1))
        if down.group(1):
            parents.add(down.group(1))
    heads = sorted(revisions - parents)
    return heads[0] if len(heads) == 1 else ",".join(heads)


async def _on_connection(url: str, work: Callable[[Connection], object], *, commit: bool) -> object:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            result = await connection.run_sync(work)
            if commit:
                await connection.commit()
            return result
    except Exception as exc:
        mapped = classify_db_error(exc)
        if isinstance(mapped, DatabaseUnavailable):
            raise mapped from exc
        raise
    finally:
        await engine.dispose()


async def upgrade_async(url: str, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` (a no-op when already there), in one transaction where possible."""
    cfg = alembic_config(url)

    def run(connection: Connection) -> None:
        from alembic import command

        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    await _on_connection(url, run, commit=True)


async def downgrade_async(url: str, revision: str = "base") -> None:
    """Downgrade to ``revision`` (tests and emergency rollbacks; ``base`` drops every registry table)."""
    cfg = alembic_config(url)

    def run(connection: Connection) -> None:
        from alembic import command

        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)

    await _on_connection(url, run, commit=True)


async def current_async(url: str) -> str | None:
    """The revision the database is at (None when never migrated)."""

    def run(connection: Connection) -> str | None:
        if not inspect(connection).has_table("alembic_version"):
            return None
        versions = sorted(row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version")))
        return ",".join(versions) if versions else None

    result = await _on_connection(url, run, commit=False)
    return result if isinstance(result, str) else None


async def is_at_head_async(url: str) -> bool:
    return await current_async(url) == head_revision()


def upgrade(url: str, revision: str = "head") -> None:
    """Synchronous :func:`upgrade_async` (for scripts; not from a running event loop)."""
    asyncio.run(upgrade_async(url, revision))


def current(url: str) -> str | None:
    """Synchronous :func:`current_async`."""
    return asyncio.run(current_async(url))
