"""Migrations on SQLite and PostgreSQL: one head; upgrade from empty, down to base and up again; the models
match the migrations (autogenerate finds nothing); concurrent upgrades; the CLI and the alembic command."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

import registry_db
import registry_db.models  # noqa: F401 - tables on the metadata
from registry_db.base import Base
from registry_db.migrate import (
    SCRIPT_LOCATION,
    alembic_config,
    current_async,
    downgrade_async,
    head_revision,
    is_at_head_async,
    upgrade_async,
)
from registry_db.repository import Registry
from registry_db.session import create_engine

ROOT = Path(__file__).resolve().parents[2]
TABLES = {"models", "model_versions", "aliases", "traffic_splits", "api_keys", "audit_log", "registry_state"}


def test_single_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, heads
    assert head_revision() == heads[0]  # the header scan the server starts with agrees with Alembic


def test_a_server_start_at_head_does_not_load_alembic(tmp_path: Path) -> None:
    """Alembic stays out of a running server's memory (~10 MB) unless the schema has to change."""
    db = tmp_path / "registry.db"
    url = f"sqlite+aiosqlite:///{db}"
    asyncio.run(upgrade_async(url))
    probe = (
        "import asyncio, sys\n"
        "from registry_db.migrate import current_async, head_revision\n"
        f"assert asyncio.run(current_async({url!r})) == head_revision()\n"
        "print('alembic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_scripts_ship_inside_the_package() -> None:
    package_dir = Path(registry_db.__file__).resolve().parent
    assert SCRIPT_LOCATION.is_relative_to(package_dir)
    assert (SCRIPT_LOCATION / "env.py").is_file() and (SCRIPT_LOCATION / "script.py.mako").is_file()
    assert list((SCRIPT_LOCATION / "versions").glob("*.py"))
    # the repository's alembic/ (DESIGN layout) is the same folder, so there is one source of truth
    assert (ROOT / "alembic").resolve() == SCRIPT_LOCATION


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


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def test_upgrade_downgrade_roundtrip_and_no_drift(db_url: str) -> None:
    assert await current_async(db_url) is None
    await upgrade_async(db_url)
    assert await current_async(db_url) == head_revision() and await is_at_head_async(db_url)
    assert await _tables(db_url) >= TABLES
    assert await _diff(db_url) == []
    await downgrade_async(db_url, "base")
    assert await current_async(db_url) is None
    assert not (await _tables(db_url)) & TABLES
    await upgrade_async(db_url)
    assert await current_async(db_url) == head_revision()
    await upgrade_async(db_url)  # idempotent at head
    registry = Registry(create_engine(db_url))
    try:
        assert await registry.routing.generation() == 0  # the single state row is seeded by the migration
    finally:
        await registry.close()


def test_concurrent_upgrades_from_several_processes(tmp_path: Path, db_url: str) -> None:
    """Replicas starting together: each upgrade waits for the other (advisory lock / BEGIN IMMEDIATE)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "service", "db", "upgrade"],
            env=_env(tmp_path, db_url),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert asyncio.run(current_async(db_url)) == head_revision()
    assert asyncio.run(_diff(db_url)) == []


def _env(tmp_path: Path, db_url: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "MODELPORT_DATA_DIR": str(tmp_path / "data"),
        "MODELPORT_DATABASE_URL": db_url,
    }


def test_cli_db_upgrade_and_current(tmp_path: Path, db_url: str) -> None:
    def modelport(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "service", *args],
            env=_env(tmp_path, db_url),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    before = modelport("db", "current")
    assert before.returncode == 0, before.stderr
    assert before.stdout.startswith("none") and "modelport db upgrade" in before.stdout
    upgraded = modelport("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"registry schema at {head_revision()}" in upgraded.stdout
    after = modelport("db", "current")
    assert after.returncode == 0 and after.stdout.startswith(head_revision()) and "up to date" in after.stdout


def test_cli_db_errors_are_one_line(tmp_path: Path) -> None:
    env = _env(tmp_path, "postgresql://postgres@127.0.0.1:1/nowhere")
    out = subprocess.run(
        [sys.executable, "-m", "service", "db", "upgrade"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "unavailable" in out.stderr


def test_alembic_command_uses_the_same_scripts(tmp_path: Path) -> None:
    alembic = Path(sys.executable).parent / "alembic"
    if not alembic.exists():
        pytest.skip(f"the alembic console script is not installed next to {sys.executable}")
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    env = _env(tmp_path, url)
    for args in (["upgrade", "head"], ["current"]):
        out = subprocess.run(
            [str(alembic), "-c", str(ROOT / "alembic.ini"), *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
    assert head_revision() in out.stdout
    assert asyncio.run(current_async(url)) == head_revision()
