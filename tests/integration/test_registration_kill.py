"""SIGKILL a registration at each step: afterwards every row points at a durable blob that verifies, the
killed attempt is invisible through the registry, ``gc`` finds its leftovers, and registering again works.

Run as a script, this file is the worker: ``python test_registration_kill.py URL STORE NONCE [STEP]``
stores an artifact and commits a version, and with STEP prints the step's name and freezes there, so the
test can kill it at exactly that point. Steps, in order:

- ``before_store``: nothing written yet;
- ``mid_store``: part of the bytes are in a temp file;
- ``after_store``: the blob is durable, no transaction open;
- ``in_transaction``: the version row is flushed (row lock held on PostgreSQL, write lock on SQLite),
  not committed;
- ``after_commit``: the row is committed.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from registry_db.errors import NotFound
from registry_db.migrate import upgrade_async
from registry_db.repository import Registry
from registry_db.session import create_engine
from registry_db.store import ArtifactStore

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
STEPS = ("before_store", "mid_store", "after_store", "in_transaction", "after_commit")


def _freeze_at(step: str, pause_at: str | None) -> None:
    if step == pause_at:
        print(step, flush=True)
        time.sleep(120)  # the test kills us here


async def _worker(url: str, store_dir: str, nonce: str, pause_at: str | None) -> None:
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from registry_db.models import ModelVersion

    def after_flush(session: Session, _context: Any) -> None:
        if any(isinstance(obj, ModelVersion) for obj in session.new):
            _freeze_at("in_transaction", pause_at)

    event.listen(Session, "after_flush", after_flush)
    registry = Registry(create_engine(url))
    store = ArtifactStore(Path(store_dir), max_bytes=10**7)
    try:
        _freeze_at("before_store", pause_at)

        async def payload() -> object:
            for i in range(4):
                yield f"artifact {nonce} part {i} ".encode() * 1000
                if i == 1:
                    _freeze_at("mid_store", pause_at)

        stored = await store.put_stream(payload())  # type: ignore[arg-type]
        _freeze_at("after_store", pause_at)
        await registry.catalog.add_version(
            "victim",
            version=None,
            backend="onnx",
            architecture=None,
            architecture_config={},
            sha256=stored.sha256,
            size_bytes=stored.size_bytes,
            storage_path=stored.storage_path,
            signature={},
            preprocessing=None,
            postprocessing=None,
            card={"nonce": nonce},
            actor=f"worker-{nonce}",
        )
        _freeze_at("after_commit", pause_at)
        print("done", flush=True)
    finally:
        await registry.close()


def _spawn(url: str, store_dir: Path, nonce: str, pause_at: str | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, url, str(store_dir), nonce, *([pause_at] if pause_at else [])],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _check_consistent(url: str, store_dir: Path) -> list[str]:
    """Every committed row points at a blob that exists and verifies; returns the version labels."""
    registry = Registry(create_engine(url))
    store = ArtifactStore(store_dir, max_bytes=10**7)
    try:
        try:
            rows = await registry.catalog.list_versions("victim")
        except NotFound:
            rows = []
        for row in rows:
            assert store.resolve(row.storage_path) == store.verified_path(row.sha256)
            assert store.path_for(row.sha256).stat().st_size == row.size_bytes
        assert [r.number for r in rows] == list(range(1, len(rows) + 1))
        return [r.version for r in rows]
    finally:
        await registry.close()


@pytest.mark.parametrize("step", STEPS)
def test_sigkill_during_registration_leaves_registry_consistent(db_url: str, tmp_path: Path, step: str) -> None:
    asyncio.run(upgrade_async(db_url))
    store_dir = tmp_path / "store"
    victim = _spawn(db_url, store_dir, "killed", pause_at=step)
    try:
        assert victim.stdout is not None
        line = victim.stdout.readline().strip()
        assert line == step, victim.stderr.read() if victim.stderr else line
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    assert victim.returncode == -signal.SIGKILL

    committed = asyncio.run(_check_consistent(db_url, store_dir))
    assert committed == (["1"] if step == "after_commit" else [])

    store = ArtifactStore(store_dir, max_bytes=10**7)
    leftovers_tmp = store.stale_temp_files(older_than_s=0)
    assert bool(leftovers_tmp) == (step == "mid_store")  # only an interrupted upload leaves a temp file
    orphans = store.orphans(set(), older_than_s=0) if not committed else []
    assert len(orphans) == (1 if step in ("after_store", "in_transaction") else 0)

    again = _spawn(db_url, store_dir, "retry")
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert out.strip() == "done"
    versions = asyncio.run(_check_consistent(db_url, store_dir))
    assert versions == committed + [str(len(committed) + 1)]


if __name__ == "__main__":
    asyncio.run(_worker(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None))
