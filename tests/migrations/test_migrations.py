"""Migrations: one head; upgrade from empty, down to base and up again; models match the migrations."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import registry_db.models  # noqa: F401 - tables on the metadata
from registry_db.base import Base
from registry_db.migrate import alembic_config, current_async, downgrade_async, head_revision, upgrade_async
from registry_db.session import create_engine


def test_single_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, heads


async def _diff(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()


async def test_upgrade_downgrade_roundtrip_and_no_drift(db_url: str) -> None:
    assert await current_async(db_url) is None
    await upgrade_async(db_url)
    assert await current_async(db_url) == head_revision()
    assert await _diff(db_url) == []
    await downgrade_async(db_url, "base")
    assert await current_async(db_url) is None
    await upgrade_async(db_url)
    assert await current_async(db_url) == head_revision()
    await upgrade_async(db_url)  # idempotent at head


@pytest.mark.parametrize("command", [["db", "current"], ["db", "upgrade"]])
def test_cli_db_commands(tmp_path, command: list[str]) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    env = {"MODELPORT_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "service", *command], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
