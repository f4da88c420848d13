"""EnginePool: single-flight loads, LRU cap that spares pinned versions, load failures reported."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from registry_db.errors import IntegrityError
from registry_db.records import VersionRecord
from service.errors import ArtifactRejected, EngineUnavailable
from service.inference.engine_pool import EnginePool
from service.inference.loader import LoadedArtifact
from service.observability.metrics import Metrics
from service.plugins import Engine, PluginRegistry, TensorSpec
from service.settings import Settings


class Doubler(Engine):
    platform = "fake"

    def __init__(self) -> None:
        self.closed = False

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec("x", "FP32", (-1, 2)),)

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec("y", "FP32", (-1, 2)),)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"] * 2}

    def close(self) -> None:
        self.closed = True


def record(version: str, sha: str = "ab" * 32) -> VersionRecord:
    now = datetime.now(UTC)
    return VersionRecord(
        "m", version, int(version), "fake", None, {}, sha, 1, "x", {}, None, None, {}, "active", now, "t"
    )


class CountingLoader:
    def __init__(self, fail: dict[str, Exception] | None = None) -> None:
        self.calls: list[str] = []
        self.engines: list[Doubler] = []
        self.fail = fail or {}
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, **kwargs: Any) -> LoadedArtifact:
        self.gate.wait(10)
        self.calls.append(kwargs["sha256"])
        if kwargs["sha256"] in self.fail:
            raise self.fail[kwargs["sha256"]]
        engine = Doubler()
        self.engines.append(engine)
        return LoadedArtifact(engine, 0.0, 0.0)


def make_pool(loader: CountingLoader, cap: int = 2) -> EnginePool:
    settings = Settings(max_loaded_engines=cap, max_batch_delay_ms=0.0, data_dir="/tmp/unused")
    return EnginePool(
        settings=settings, store=None, plugins=PluginRegistry(autoload=False), metrics=Metrics(), loader=loader
    )


async def test_concurrent_first_requests_share_one_load() -> None:
    loader = CountingLoader()
    loader.gate.clear()
    pool = make_pool(loader)
    tasks = [asyncio.create_task(pool.acquire(record("1", sha="11" * 32))) for _ in range(10)]
    await asyncio.sleep(0.05)
    loader.gate.set()
    served = await asyncio.gather(*tasks)
    assert len({id(s) for s in served}) == 1
    assert loader.calls == ["11" * 32]
    out = await served[0].batcher.submit({"x": np.ones((1, 2), np.float32)})
    np.testing.assert_array_equal(out["y"], [[2.0, 2.0]])
    await pool.close()


async def test_lru_cap_never_evicts_pinned() -> None:
    loader = CountingLoader()
    pool = make_pool(loader, cap=2)
    pool.set_pinned({("m", "1")})
    for v in ("1", "2", "3", "4"):
        await pool.acquire(record(v, sha=f"{v}{v}" * 32))
    await asyncio.sleep(0.05)
    assert set(pool.loaded_keys) == {("m", "1"), ("m", "4")}
    assert sum(e.closed for e in loader.engines) == 2
    await pool.close()
    assert all(e.closed for e in loader.engines)


@pytest.mark.parametrize("error", [ArtifactRejected("bad bytes"), IntegrityError("sha256 mismatch")])
async def test_failed_load_is_reported_and_not_retried_immediately(error: Exception) -> None:
    loader = CountingLoader(fail={"99" * 32: error})
    pool = make_pool(loader)
    for _ in range(3):
        with pytest.raises(EngineUnavailable, match="failed to load"):
            await pool.acquire(record("9", sha="99" * 32))
    assert loader.calls == ["99" * 32]
    assert pool.failure("m", "9") is not None
    ok = await pool.acquire(record("1", sha="11" * 32))
    assert ok.record.version == "1"
    await pool.close()
