"""Two OS processes registering unversioned versions of one model at the same moment get the distinct,
gap-free numbers 1..50, without an error, on PostgreSQL (row lock) and on SQLite (BEGIN IMMEDIATE).

Run as a script, this file is the worker: ``python test_registry_concurrency.py URL STORE GO_FILE COUNT``
prints ``ready``, waits for GO_FILE to appear (a start barrier, so both workers really overlap), then stores
COUNT distinct artifacts and commits a version for each through ``Registry.catalog.add_version``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from registry_db.migrate import upgrade_async
from registry_db.repository import Registry
from registry_db.session import create_engine
from registry_db.store import ArtifactStore

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PER_WORKER = 25


async def _worker(url: str, store_dir: str, go_file: str, count: int) -> None:
    registry = Registry(create_engine(url))
    store = ArtifactStore(Path(store_dir), max_bytes=10**7)
    try:
        await registry.ping()  # connect before the barrier
        print("ready", flush=True)
        deadline = time.monotonic() + 60
        while not os.path.exists(go_file):
            if time.monotonic() > deadline:
                raise SystemExit("start barrier never opened")
            await asyncio.sleep(0.005)
        me = f"worker-{os.getpid()}"
        started = time.time()
        for i in range(count):

            async def payload(i: int = i) -> object:
                yield f"{me} artifact {i}".encode() * 64

            stored = await store.put_stream(payload())  # type: ignore[arg-type]
            await registry.catalog.add_version(
                "race",
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
                card={},
                actor=me,
            )
        print(f"done {started} {time.time()}", flush=True)
    finally:
        await registry.close()


def test_two_processes_register_50_distinct_gap_free_versions(db_url: str, tmp_path: Path) -> None:
    asyncio.run(upgrade_async(db_url))
    store_dir, go = tmp_path / "store", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, db_url, str(store_dir), str(go), str(PER_WORKER)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    spans: list[tuple[float, float]] = []
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        go.touch()
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            word, start, end = out.split()
            assert word == "done" and "Traceback" not in err
            spans.append((float(start), float(end)))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()

    async def check() -> None:
        registry = Registry(create_engine(db_url))
        store = ArtifactStore(store_dir, max_bytes=10**7)
        try:
            versions = await registry.catalog.list_versions("race")
            assert [v.number for v in versions] == list(range(1, 2 * PER_WORKER + 1))
            assert [v.version for v in versions] == [str(n) for n in range(1, 2 * PER_WORKER + 1)]
            authors = [v.created_by for v in versions]
            assert len(set(authors)) == 2 and all(authors.count(a) == PER_WORKER for a in set(authors))
            for v in versions:
                assert store.verified_path(v.sha256).stat().st_size == v.size_bytes
            audit = await registry.audit.list_audit(limit=1000)
            assert sum(a.action == "version.register" for a in audit) == 2 * PER_WORKER
            assert sum(a.action == "model.create" for a in audit) == 1
            assert await registry.routing.generation() == 2 * PER_WORKER  # one bump per registration
        finally:
            await registry.close()

    asyncio.run(check())
    # the two workers really raced: each was registering while the other was
    assert max(start for start, _ in spans) < min(end for _, end in spans), spans


if __name__ == "__main__":
    asyncio.run(_worker(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
