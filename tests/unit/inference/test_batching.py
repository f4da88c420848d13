"""DynamicBatcher behaviour, proved with engines that block on Events and record their batches.

No assertion depends on how fast the machine is: workers are held busy with :class:`SlowEngine` gates,
and waits are "until this condition holds" with a generous deadline, failing only if it never does.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from service.errors import BackendFailure, EngineUnavailable, InvalidInput, Overloaded
from service.inference.batching import DynamicBatcher, QueuePressure
from service.plugins.contract import TensorSpec
from tests.fakes.engines import EchoEngine, FailingEngine, SlowEngine

BLOCK = -1.0
"""Marker value: a request holding it blocks in SlowEngine(block_when=holds_marker) until released."""


def holds_marker(inputs: dict[str, np.ndarray]) -> bool:
    return bool((inputs["input"] == BLOCK).any())


def rows(n: int, value: float, width: int = 4) -> dict[str, np.ndarray]:
    return {"input": np.full((n, width), value, dtype=np.float32)}


async def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.001)


def make(engine: EchoEngine, **overrides: object) -> DynamicBatcher:
    options: dict[str, object] = {"max_batch_size": 8, "max_delay_s": 0.0, "max_queue": 64, "threads": 1}
    options.update(overrides)
    return DynamicBatcher(engine.predict, name="test:1", **options)  # type: ignore[arg-type]


async def occupy(batcher: DynamicBatcher, engine: SlowEngine, count: int = 1) -> list[asyncio.Task[dict]]:
    """Start ``count`` blocking requests and wait until each holds a worker."""
    tasks = []
    for i in range(count):
        tasks.append(asyncio.create_task(batcher.submit(rows(1, BLOCK))))
        await wait_until(lambda i=i: engine.entered == i + 1)
    return tasks


async def test_idle_engine_runs_a_lone_request_at_once_without_the_delay() -> None:
    engine = EchoEngine()
    batcher = make(engine, max_delay_s=3600.0)
    await batcher.start()
    result = await asyncio.wait_for(batcher.submit(rows(1, 3.0)), timeout=60)  # would take an hour if it waited
    np.testing.assert_array_equal(result["output"], rows(1, 3.0)["input"])
    assert engine.batch_sizes == [1]
    await batcher.stop(5)


async def test_requests_queued_while_busy_run_as_one_batch_with_results_in_order() -> None:
    engine = SlowEngine(block_when=holds_marker)
    batcher = make(engine)
    (blocker,) = await occupy(batcher, engine)
    tasks = [asyncio.create_task(batcher.submit(rows(1, float(i)))) for i in range(5)]
    await wait_until(lambda: batcher.queue_depth == 5)
    engine.release()
    results = await asyncio.gather(*tasks)
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result["output"], rows(1, float(i))["input"])
    await blocker
    assert engine.batch_sizes == [1, 5]
    np.testing.assert_array_equal(engine.calls[1]["input"][:, 0], [0, 1, 2, 3, 4])  # queue order kept
    await batcher.stop(5)


async def test_mixed_batch_sizes_are_concatenated_and_split_back() -> None:
    engine = SlowEngine(block_when=holds_marker)
    batcher = make(engine, max_batch_size=16)
    (blocker,) = await occupy(batcher, engine)
    sizes = [3, 1, 4, 2]
    tasks = [asyncio.create_task(batcher.submit(rows(n, float(i + 1)))) for i, n in enumerate(sizes)]
    await wait_until(lambda: batcher.queue_depth == 4)
    engine.release()
    results = await asyncio.gather(*tasks, blocker)
    for i, n in enumerate(sizes):
        assert results[i]["output"].shape == (n, 4)
        assert (results[i]["output"] == i + 1).all()
    assert engine.batch_sizes == [1, 10]


async def test_batches_never_exceed_max_batch_size() -> None:
    engine = SlowEngine(block_when=holds_marker)
    batcher = make(engine, max_batch_size=4)
    (blocker,) = await occupy(batcher, engine)
    tasks = [asyncio.create_task(batcher.submit(rows(n, 1.0))) for n in (1, 1, 1, 1, 2, 3)]
    await wait_until(lambda: batcher.queue_depth == 6)
    engine.release()
    await asyncio.gather(*tasks, blocker)
    assert engine.batch_sizes == [1, 4, 2, 3]


async def test_unstackable_requests_run_in_separate_batches_keeping_others_together() -> None:
    spec = (TensorSpec("input", "FP32", (-1, -1)),)
    engine = SlowEngine(spec, (TensorSpec("output", "FP32", (-1, -1)),), block_when=holds_marker)
    batcher = make(engine)
    (blocker,) = await occupy(batcher, engine)
    widths = [2, 3, 2, 3, 2]
    tasks = [asyncio.create_task(batcher.submit(rows(1, float(i), width=w))) for i, w in enumerate(widths)]
    await wait_until(lambda: batcher.queue_depth == 5)
    engine.release()
    results = await asyncio.gather(*tasks, blocker)
    for i, w in enumerate(widths):
        np.testing.assert_array_equal(results[i]["output"], rows(1, float(i), width=w)["input"])
    assert engine.batch_sizes == [1, 3, 2]
    assert [call["input"].shape[1] for call in engine.calls[1:]] == [2, 3]
    with_float64 = asyncio.create_task(batcher.submit({"input": np.zeros((1, 2))}))
    same_width = asyncio.create_task(batcher.submit(rows(1, 0.0, width=2)))
    assert (await with_float64)["output"].dtype == np.float64  # dtypes never mixed in one batch
    assert (await same_width)["output"].dtype == np.float32


async def test_partial_batch_flushes_on_the_delay_while_another_batch_runs() -> None:
    engine = SlowEngine(block_when=holds_marker)
    batcher = make(engine, threads=2, max_batch_size=8, max_delay_s=0.05)
    (blocker,) = await occupy(batcher, engine)
    # A worker is free but a batch is running: these wait for company, and go when the oldest has waited
    # max_delay_s, as a partial batch (2 < 8 rows) while the first batch is still blocked.
    first, second = await asyncio.wait_for(
        asyncio.gather(batcher.submit(rows(1, 1.0)), batcher.submit(rows(1, 2.0))), timeout=60
    )
    assert not blocker.done()
    assert engine.batch_sizes == [1, 2]
    assert (first["output"] == 1.0).all() and (second["output"] == 2.0).all()
    engine.release()
    await blocker
    await batcher.stop(5)


async def test_full_batch_goes_without_waiting_for_the_delay() -> None:
    engine = SlowEngine(block_when=holds_marker)
    batcher = make(engine, threads=2, max_batch_size=4, max_delay_s=3600.0)
    (blocker,) = await occupy(batcher, engine)
    results = await asyncio.wait_for(asyncio.gather(*(batcher.submit(rows(1, float(i))) for i in range(4))), timeout=60)
    assert [float(r["output"][0, 0]) for r in results] == [0.0, 1.0, 2.0, 3.0]
    assert engine.batch_sizes == [1, 4] and not blocker.done()
    engine.release()
    await blocker
    await batcher.stop(5)


async def test_a_failing_request_fails_alone_and_its_batch_mates_succeed() -> None:
    engine = FailingEngine(should_fail=lambda x: bool((x["input"] == 666).any()), block_when=holds_marker)
    batcher = make(engine)
    (blocker,) = await occupy(batcher, engine)
    good1 = asyncio.create_task(batcher.submit(rows(1, 1.0)))
    bad = asyncio.create_task(batcher.submit(rows(2, 666.0)))
    good2 = asyncio.create_task(batcher.submit(rows(1, 2.0)))
    await wait_until(lambda: batcher.queue_depth == 3)
    engine.release()
    assert (await good1)["output"][0, 0] == 1.0
    assert (await good2)["output"][0, 0] == 2.0
    with pytest.raises(BackendFailure) as info:
        await bad
    assert "RuntimeError" in info.value.message and isinstance(info.value.__cause__, RuntimeError)
    assert "engine exploded" not in info.value.message  # internals stay out of client messages
    await blocker
    assert engine.batch_sizes == [1, 4, 1, 2, 1]  # the failed batch of 4, then each request alone
    # the batcher keeps serving
    assert (await batcher.submit(rows(1, 5.0)))["output"][0, 0] == 5.0
    await batcher.stop(5)


async def test_engine_domain_errors_pass_through_unwrapped() -> None:
    engine = FailingEngine(error=InvalidInput("token ids out of vocabulary"))
    batcher = make(engine)
    with pytest.raises(InvalidInput, match="out of vocabulary"):
        await batcher.submit(rows(1, 1.0))
    await batcher.stop(5)


async def test_wrong_output_rows_are_a_backend_failure() -> None:
    batcher = DynamicBatcher(
        lambda x: {"y": np.zeros((5, 1))}, max_batch_size=8, max_delay_s=0, max_queue=4, name="bad"
    )
    with pytest.raises(BackendFailure, match="returned output 'y' with shape \\[5, 1\\] for a batch of 2 rows"):
        await batcher.submit(rows(2, 1.0))
    await batcher.stop(5)


async def test_full_queue_is_refused_at_once_with_retry_after() -> None:
    engine = SlowEngine(block_when=holds_marker)
    batcher = make(engine, max_queue=2)
    (blocker,) = await occupy(batcher, engine)
    queued = [asyncio.create_task(batcher.submit(rows(1, float(i)))) for i in range(2)]
    await wait_until(lambda: batcher.queue_depth == 2)
    with pytest.raises(Overloaded) as info:
        await batcher.submit(rows(1, 9.0))
    assert info.value.retry_after_s >= 1
    assert "2 requests already queued" in info.value.message and "timeout" not in info.value.message
    engine.release()
    await asyncio.gather(*queued, blocker)
    assert 9.0 not in np.concatenate([c["input"] for c in engine.calls])
    await batcher.stop(5)


async def test_queue_pressure_counts_a_batcher_exactly_while_its_queue_is_full() -> None:
    """Admission skips every other check while no queue is full, so the count must follow each way a queue
    shrinks: a caller gone, a queue timeout, batches taken, the batcher stopped."""
    pressure = QueuePressure()
    engine = SlowEngine(block_when=holds_marker)
    batcher = make(engine, max_queue=2, pressure=pressure)
    (blocker,) = await occupy(batcher, engine)
    queued = [asyncio.create_task(batcher.submit(rows(1, float(i)))) for i in range(2)]
    await wait_until(lambda: batcher.queue_depth == 2)
    assert pressure.full_queues == 1
    queued[0].cancel()  # a caller went away
    await wait_until(lambda: batcher.queue_depth == 1)
    assert pressure.full_queues == 0
    expiring = asyncio.create_task(batcher.submit(rows(1, 6.0), timeout_s=0.2))
    await wait_until(lambda: pressure.full_queues == 1)
    with pytest.raises(Overloaded):
        await expiring  # it timed out in the queue
    assert pressure.full_queues == 0
    refill = asyncio.create_task(batcher.submit(rows(1, 7.0)))
    await wait_until(lambda: pressure.full_queues == 1)
    engine.release()  # batches are taken: the queue drains
    await asyncio.gather(blocker, queued[1], refill)
    assert pressure.full_queues == 0
    await batcher.stop(5)

    other_engine = SlowEngine(block_when=holds_marker)
    other = make(other_engine, max_queue=1, pressure=pressure)
    (held,) = await occupy(other, other_engine)
    waiting = asyncio.create_task(other.submit(rows(1, 1.0)))
    await wait_until(lambda: pressure.full_queues == 1)
    await other.stop(0)  # stopped with a full queue: what waited is failed, the count drops
    assert pressure.full_queues == 0
    other_engine.release()
    for task in (held, waiting):
        with pytest.raises(EngineUnavailable):
            await task


async def test_cancelled_queued_request_is_dropped_unrun() -> None:
    engine = SlowEngine(block_when=holds_marker)
    batcher = make(engine)
    (blocker,) = await occupy(batcher, engine)
    doomed = asyncio.create_task(batcher.submit(rows(1, 42.0)))
    kept = asyncio.create_task(batcher.submit(rows(1, 7.0)))
    await wait_until(lambda: batcher.queue_depth == 2)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert batcher.queue_depth == 1  # it left the queue at once, freeing its slot
    engine.release()
    assert (await kept)["output"][0, 0] == 7.0
    await blocker
    seen = np.concatenate([c["input"] for c in engine.calls])
    assert 42.0 not in seen and 7.0 in seen
    await batcher.stop(5)


async def test_cancelled_running_request_does_not_break_the_batcher() -> None:
    engine = SlowEngine(block_when=holds_marker)
    batcher = make(engine)
    (blocker,) = await occupy(batcher, engine)
    blocker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocker
    engine.release()
    assert (await batcher.submit(rows(1, 3.0)))["output"][0, 0] == 3.0
    await batcher.stop(5)


async def test_queue_timeout_answers_overloaded_without_running() -> None:
    engine = SlowEngine(block_when=holds_marker)
    batcher = make(engine)
    (blocker,) = await occupy(batcher, engine)
    with pytest.raises(Overloaded) as info:
        await batcher.submit(rows(1, 42.0), timeout_s=0.02)  # the only worker stays busy: it must time out
    assert info.value.message.startswith("queue timeout") and info.value.retry_after_s >= 1
    assert batcher.queue_depth == 0
    patient = asyncio.create_task(batcher.submit(rows(1, 7.0), timeout_s=3600))
    await wait_until(lambda: batcher.queue_depth == 1)
    engine.release()
    assert (await patient)["output"][0, 0] == 7.0
    await blocker
    assert 42.0 not in np.concatenate([c["input"] for c in engine.calls])
    await batcher.stop(5)


async def test_stop_drains_queued_and_running_work_and_refuses_new_requests() -> None:
    engine = SlowEngine(block_when=holds_marker)
    batcher = make(engine)
    (blocker,) = await occupy(batcher, engine)
    queued = asyncio.create_task(batcher.submit(rows(1, 5.0)))
    await wait_until(lambda: batcher.queue_depth == 1)
    stopping = asyncio.create_task(batcher.stop(drain_timeout_s=60))
    await asyncio.sleep(0)
    with pytest.raises(EngineUnavailable, match="being unloaded"):
        await batcher.submit(rows(1, 1.0))
    assert not stopping.done()
    engine.release()
    await stopping
    assert (await queued)["output"][0, 0] == 5.0
    assert (await blocker)["output"][0, 0] == BLOCK


async def test_stop_fails_what_is_left_after_the_drain_timeout() -> None:
    engine = SlowEngine(block_when=holds_marker)
    batcher = make(engine)
    (blocker,) = await occupy(batcher, engine)
    queued = asyncio.create_task(batcher.submit(rows(1, 5.0)))
    await wait_until(lambda: batcher.queue_depth == 1)
    await batcher.stop(drain_timeout_s=0.01)
    for task in (blocker, queued):
        with pytest.raises(EngineUnavailable, match="unloaded"):
            await task
    engine.release()  # let the worker thread finish


async def test_predict_runs_in_worker_threads_and_reports_batches() -> None:
    loop_thread = threading.get_ident()
    seen_threads: list[int] = []
    reports: list[tuple[int, float]] = []

    def predict(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seen_threads.append(threading.get_ident())
        return {"y": inputs["input"] * 2}

    batcher = DynamicBatcher(
        predict,
        max_batch_size=8,
        max_delay_s=0,
        max_queue=8,
        threads=2,
        name="t",
        on_batch=lambda n, s: reports.append((n, s)),
    )
    result = await batcher.submit(rows(3, 1.5))
    np.testing.assert_array_equal(result["y"], np.full((3, 4), 3.0))
    assert seen_threads and loop_thread not in seen_threads
    assert reports[0][0] == 3 and reports[0][1] >= 0
    await batcher.stop(5)


async def test_multi_input_requests_stack_per_input() -> None:
    specs = (TensorSpec("input", "FP32", (-1, 2)), TensorSpec("ids", "INT64", (-1,)))
    outs = (TensorSpec("output", "FP32", (-1, 2)), TensorSpec("ids_out", "INT64", (-1,)))
    engine = SlowEngine(specs, outs, block_when=holds_marker)
    batcher = make(engine)
    blocker = asyncio.create_task(
        batcher.submit({"input": np.full((1, 2), BLOCK, np.float32), "ids": np.zeros(1, np.int64)})
    )
    await wait_until(lambda: engine.entered == 1)
    a = asyncio.create_task(batcher.submit({"input": np.ones((2, 2), np.float32), "ids": np.array([1, 2])}))
    b = asyncio.create_task(batcher.submit({"input": np.zeros((1, 2), np.float32), "ids": np.array([3])}))
    await wait_until(lambda: batcher.queue_depth == 2)
    engine.release()
    ra, rb, _ = await asyncio.gather(a, b, blocker)
    assert ra["ids_out"].tolist() == [1, 2] and rb["ids_out"].tolist() == [3]
    assert engine.batch_sizes == [1, 3]
    await batcher.stop(5)


def test_constructor_validates_limits() -> None:
    with pytest.raises(ValueError):
        DynamicBatcher(lambda x: x, max_batch_size=0, max_delay_s=0, max_queue=1, name="x")
    with pytest.raises(ValueError):
        DynamicBatcher(lambda x: x, max_batch_size=1, max_delay_s=-1, max_queue=1, name="x")


async def test_without_a_delay_a_free_worker_takes_work_while_another_batch_runs() -> None:
    engine = SlowEngine(block_when=holds_marker)
    batcher = make(engine, threads=2, max_delay_s=0.0)
    (blocker,) = await occupy(batcher, engine)
    result = await asyncio.wait_for(batcher.submit(rows(1, 4.0)), timeout=60)
    assert result["output"][0, 0] == 4.0 and not blocker.done()
    engine.release()
    await blocker
    await batcher.stop(5)
