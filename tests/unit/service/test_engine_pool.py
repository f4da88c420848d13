"""EnginePool: single-flight loads, LRU cap that spares pinned versions, load failures reported."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np
import pytest

from registry_db.errors import IntegrityError
from service.errors import ArtifactRejected, EngineUnavailable
from service.inference.engine_pool import EnginePool
from service.observability.metrics import Metrics
from service.plugins import PluginRegistry
from service.settings import Settings
from tests.fakes.loading import CountingLoader, record


async def _eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll ``condition`` until it holds, failing after ``timeout_s`` (no fixed sleep standing in for a signal)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


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
    # every acquire ran before the load task reached its worker thread (tasks run in creation order)
    assert await asyncio.to_thread(loader.entered.wait, 10)
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
    assert set(pool.loaded_keys) == {("m", "1"), ("m", "4")}
    await _eventually(lambda: sum(e.closed for e in loader.engines) == 2)  # retired engines close in the background
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
