"""Dynamic batching per engine: a bounded queue, one consumer task, ``predict`` in worker threads.

What a caller of :meth:`DynamicBatcher.submit` can rely on (Triton's dynamic batcher, made adaptive):

* **Bounded queue.** At most ``max_queue`` requests wait; one more is refused at once with
  :class:`~service.errors.Overloaded` (503 + ``Retry-After``), never queued or turned into a 500.
* **No added latency when idle.** When no batch is running, a free worker takes whatever is queued right
  away (one request at concurrency 1): no timer, no waiting for company.
* **Batches form under load.** While batches run, requests queue; the next free worker takes up to
  ``max_batch_size`` rows. When a worker is free but other batches are still running (``threads > 1``),
  it waits until the queue holds ``max_batch_size`` rows or the oldest request has waited ``max_delay_s``,
  so batches fill instead of running at size 1 (with ``threads == 1`` a free worker means an idle engine,
  so the delay never applies: the previous batch's run time is the batching window).
* **Stacking.** Requests are concatenated along axis 0 when every input has the same dtype and trailing
  shape; others run in their own batches (queue order is otherwise kept). Outputs are split back by rows.
* **Isolation.** A failing ``predict`` fails only its batch; a batch of several is then retried one
  request at a time, so one bad request does not fail the others.
* **Cancellation and staleness.** A request whose caller went away (its awaiting task was cancelled) is
  removed unrun; one that waited longer than its ``timeout_s`` gets ``Overloaded("queue timeout ...")``
  without running.
* **Threads.** ``predict`` runs on ``threads`` worker threads fed by one queue, never on the event
  loop; each finished batch is handed back with one ``loop.call_soon_threadsafe``.

All state is touched only on the event loop; worker threads see a batch and report back.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from queue import Empty, SimpleQueue
from threading import Thread
from typing import Any

import numpy as np
import structlog

from service.errors import BackendFailure, EngineUnavailable, ModelportError, Overloaded

__all__ = ("DynamicBatcher", "PredictFn", "QueuePressure")

_log = structlog.get_logger(__name__)

PredictFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
"""``Engine.predict``: ``{name: (batch, *dims)}`` -> ``{name: (batch, *dims)}``; called from worker threads."""

# request states
_QUEUED, _RUNNING, _GONE = 0, 1, 2
# what the consumer is waiting for
_NOTHING, _WORK, _WORKER, _LINGER = 0, 1, 2, 3
_SCAN_LIMIT = 64
"""How far past an unstackable request the batch builder looks for stackable ones."""


class QueuePressure:
    """How many of a process's batchers have a full queue right now, kept by the batchers themselves: admission
    reads it before anything else, so a call when no queue is full costs one attribute read."""

    __slots__ = ("full_queues",)

    def __init__(self) -> None:
        self.full_queues = 0


class _Request:
    __slots__ = ("deadline", "enqueued", "future", "inputs", "key", "rows", "state", "timer")

    def __init__(self, inputs: dict[str, np.ndarray], future: asyncio.Future[dict[str, np.ndarray]]) -> None:
        self.inputs = inputs
        self.future = future
        self.enqueued = time.monotonic()
        self.deadline: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.state = _QUEUED
        if len(inputs) == 1:
            ((name, array),) = inputs.items()
            if array.ndim:
                self.rows: int = array.shape[0]
                self.key: tuple[Any, ...] | None = (name, array.dtype, array.shape[1:])
            else:
                self.rows, self.key = 1, None
        else:
            arrays = list(inputs.values())
            if arrays and all(a.ndim for a in arrays):
                self.rows = arrays[0].shape[0]
                self.key = tuple((name, a.dtype, a.shape[1:]) for name, a in inputs.items())
            else:
                self.rows, self.key = 1, None


class DynamicBatcher:
    """Queues requests for one engine and runs them in batches; see the module docstring for the rules.

    Life cycle: ``await start()`` once (``submit`` also starts it lazily), ``submit`` from any number of
    tasks on the same event loop, ``await stop(drain_timeout_s)`` when the engine is retired.
    """

    def __init__(
        self,
        predict: PredictFn,
        *,
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        threads: int = 1,
        name: str,
        on_batch: Callable[[int, float], None] | None = None,
        pressure: QueuePressure | None = None,
    ) -> None:
        """Args:
        predict: the engine's thread-safe ``predict`` on a whole batch.
        max_batch_size: most rows in one batch (a single larger request still runs, alone).
        max_delay_s: longest the oldest request waits for a batch to fill while other batches run.
        max_queue: most requests waiting (not yet running); more are refused with Overloaded.
        threads: worker threads running batches concurrently.
        name: for thread names, logs and error messages (e.g. ``"mlp:2"``).
        on_batch: called after every batch with ``(rows, seconds)`` from the worker thread (metrics).
        pressure: shared with the other batchers of the process; counts this one while its queue is full.
        """
        if max_batch_size < 1 or max_queue < 1 or threads < 1 or max_delay_s < 0:
            raise ValueError("max_batch_size, max_queue and threads must be >= 1 and max_delay_s >= 0")
        self._predict = predict
        self._max_batch = max_batch_size
        self._max_delay = max_delay_s
        self._max_queue = max_queue
        self._threads = threads
        self.name = name
        self._on_batch = on_batch
        self._queue: deque[_Request] = deque()
        self._queued_rows = 0
        self._free = threads
        self._running: set[tuple[_Request, ...]] = set()
        self._wake = asyncio.Event()
        self._waiting = _NOTHING
        self._loop: asyncio.AbstractEventLoop | None = None
        self._work_queue: SimpleQueue[tuple[_Request, ...] | None] | None = None
        """Batches for the worker threads (None tells one to exit): a bare queue, not a ThreadPoolExecutor,
        whose Future, work item and thread-count check per submit cost ~6 us a batch on one core."""
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._batch_seconds = 0.0  # moving average, for Retry-After
        self._pressure = pressure or QueuePressure()
        self._counted_full = False

    # -- introspection ----------------------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        """Requests waiting (not yet running)."""
        return len(self._queue)

    @property
    def running_batches(self) -> int:
        """Batches being predicted right now."""
        return len(self._running)

    @property
    def max_batch_size(self) -> int:
        return self._max_batch

    # -- life cycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Create the worker threads and the consumer task (idempotent)."""
        if self._task is not None:
            return
        if self._stopping:
            raise EngineUnavailable(f"'{self.name}' is stopped")
        self._loop = asyncio.get_running_loop()
        work_queue: SimpleQueue[tuple[_Request, ...] | None] = SimpleQueue()
        self._work_queue = work_queue
        for index in range(self._threads):
            # daemon: a batcher never stopped must not hold the interpreter's exit; stop() ends them
            Thread(target=self._worker, args=(work_queue,), name=f"batch-{self.name}_{index}", daemon=True).start()
        self._task = self._loop.create_task(self._consume(), name=f"batcher:{self.name}")
        self._task.add_done_callback(self._consumer_done)

    async def stop(self, drain_timeout_s: float) -> None:
        """Refuse new requests, let queued and running ones finish for up to ``drain_timeout_s``, then fail
        whatever is left with EngineUnavailable and release the threads."""
        self._stopping = True
        task = self._task
        if task is None:
            return
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=max(drain_timeout_s, 0.0))
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        except Exception:  # noqa: BLE001 - a crashed consumer was logged by _consumer_done
            pass
        finally:
            self._fail_all(EngineUnavailable(f"'{self.name}' was unloaded before this request finished"))
            self._stop_workers()

    def _consumer_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            _log.error("batcher_crashed", batcher=self.name, exc_info=task.exception())
            self._stopping = True
            self._fail_all(EngineUnavailable(f"'{self.name}' stopped unexpectedly"))

    def _fail_all(self, error: ModelportError) -> None:
        while self._queue:
            request = self._queue.popleft()
            self._drop(request)
            if not request.future.done():
                request.future.set_exception(error)
        self._queued_rows = 0
        self._track_full()
        for batch in self._running:
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(error)

    # -- submit -----------------------------------------------------------------------------------------
    async def submit(self, inputs: dict[str, np.ndarray], *, timeout_s: float | None = None) -> dict[str, np.ndarray]:
        """Run one request's inputs (``(rows, *dims)`` each) in some batch and return its outputs.

        Args:
            inputs: validated arrays, all with the same number of rows.
            timeout_s: longest this request may wait in the queue (None or <= 0: no limit).

        Raises:
            Overloaded: the queue is full, or the request waited longer than ``timeout_s``.
            EngineUnavailable: the batcher is stopping.
            BackendFailure: ``predict`` failed for this request (the engine's own domain errors pass as is).
        """
        if self._task is None:
            await self.start()
        if self._stopping:
            raise EngineUnavailable(f"'{self.name}' is being unloaded; retry", retry_after_s=1)
        queue = self._queue
        loop = self._loop
        assert loop is not None
        if not queue and self._free and (not self._running or self._max_delay <= 0):
            # what the consumer would do at once (a free worker, nothing to wait for): skip the hop through it
            request = _Request(inputs, loop.create_future())
            request.state = _RUNNING
            self._dispatch([request])
            return await request.future
        if len(queue) >= self._max_queue:
            raise self.overloaded()
        request = _Request(inputs, loop.create_future())
        if timeout_s is not None and timeout_s > 0:
            request.deadline = request.enqueued + timeout_s
            request.timer = loop.call_later(timeout_s, self._expire, request)
        queue.append(request)
        self._queued_rows += request.rows
        if len(queue) >= self._max_queue:
            self._track_full()
        waiting = self._waiting
        if waiting == _WORK or (waiting == _LINGER and self._queued_rows >= self._max_batch):
            self._wake.set()
        try:
            return await request.future
        except asyncio.CancelledError:
            if request.state == _QUEUED:  # client went away before it ran: never run it
                self._remove(request)
            raise

    @property
    def full(self) -> bool:
        """Whether a request submitted now would be refused (read by admission before a body is read)."""
        return len(self._queue) >= self._max_queue

    def _track_full(self) -> None:
        """Keep :class:`QueuePressure` in step after the queue grew to its bound or shrank."""
        full = len(self._queue) >= self._max_queue
        if full != self._counted_full:
            self._counted_full = full
            self._pressure.full_queues += 1 if full else -1

    def overloaded(self) -> Overloaded:
        """The refusal of a request that finds the queue full, with a Retry-After from the work ahead."""
        return Overloaded(
            f"'{self.name}' is overloaded: {self._max_queue} requests already queued", self._retry_after()
        )

    def _retry_after(self) -> int:
        batches_ahead = len(self._queue) / self._max_batch + len(self._running)
        return max(1, math.ceil(self._batch_seconds * batches_ahead / self._threads))

    def _drop(self, request: _Request) -> None:
        request.state = _GONE
        if request.timer is not None:
            request.timer.cancel()
            request.timer = None

    def _remove(self, request: _Request) -> None:
        with contextlib.suppress(ValueError):
            self._queue.remove(request)
            self._queued_rows -= request.rows
        self._drop(request)
        if self._counted_full:
            self._track_full()

    def _expire(self, request: _Request) -> None:
        if request.state != _QUEUED:
            return
        self._remove(request)
        if not request.future.done():
            waited_ms = (time.monotonic() - request.enqueued) * 1000.0
            request.future.set_exception(
                Overloaded(
                    f"queue timeout: waited {waited_ms:.0f} ms in the queue of '{self.name}'", 1, reason="queue_timeout"
                )
            )

    # -- consumer ---------------------------------------------------------------------------------------
    async def _sleep(self, waiting: int, timeout: float | None) -> None:
        self._wake.clear()
        self._waiting = waiting
        handle = self._loop.call_later(timeout, self._wake.set) if timeout is not None else None  # type: ignore[union-attr]
        try:
            await self._wake.wait()
        finally:
            self._waiting = _NOTHING
            if handle is not None:
                handle.cancel()

    async def _consume(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                if self._stopping and not self._running:
                    return
                await self._sleep(_WORK, None)
                continue
            if self._free == 0:
                await self._sleep(_WORKER, None)
                continue
            if self._running and not self._stopping and self._max_delay > 0 and self._queued_rows < self._max_batch:
                remaining = queue[0].enqueued + self._max_delay - time.monotonic()
                if remaining > 0:
                    await self._sleep(_LINGER, remaining)
                    continue
            batch = self._take()
            if batch:
                self._dispatch(batch)

    def _take(self) -> list[_Request]:
        """Pop the next batch: the oldest live request plus stackable followers, up to max_batch_size rows."""
        queue = self._queue
        now = time.monotonic()
        batch: list[_Request] = []
        skipped: list[_Request] = []
        rows = 0
        key: Any = None
        scanned = 0
        while queue and scanned < _SCAN_LIMIT:
            request = queue[0]
            if request.future.done():  # cancelled without passing through submit's handler
                queue.popleft()
                self._queued_rows -= request.rows
                self._drop(request)
                continue
            if request.deadline is not None and now > request.deadline:
                self._expire(request)
                continue
            if batch and key is None:
                break
            if batch and request.key != key:
                queue.popleft()
                skipped.append(request)
                scanned += 1
                continue
            if batch and rows + request.rows > self._max_batch:
                break
            queue.popleft()
            self._queued_rows -= request.rows
            if request.timer is not None:
                request.timer.cancel()
                request.timer = None
            request.state = _RUNNING
            batch.append(request)
            rows += request.rows
            if len(batch) == 1:
                key = request.key
            if rows >= self._max_batch:
                break
        if skipped:
            queue.extendleft(reversed(skipped))
        if self._counted_full:
            self._track_full()
        return batch

    def _dispatch(self, batch: list[_Request]) -> None:
        token = tuple(batch)
        self._free -= 1
        self._running.add(token)
        assert self._work_queue is not None
        self._work_queue.put(token)

    def _stop_workers(self) -> None:
        """Drop batches no thread has started (their requests were failed) and let every thread exit."""
        work_queue, self._work_queue = self._work_queue, None
        if work_queue is None:
            return
        with contextlib.suppress(Empty):
            while True:
                work_queue.get_nowait()
        for _ in range(self._threads):
            work_queue.put(None)

    # -- worker thread ----------------------------------------------------------------------------------
    def _worker(self, work_queue: SimpleQueue[tuple[_Request, ...] | None]) -> None:
        while True:
            batch = work_queue.get()
            if batch is None:
                return
            try:
                self._work(batch)
            except BaseException:  # noqa: BLE001 - _work delivers its own failures; this thread must live on
                _log.exception("batch_worker_failed", batcher=self.name)

    def _work(self, batch: tuple[_Request, ...]) -> None:
        started = time.perf_counter()
        rows = [request.rows for request in batch]
        results: list[dict[str, np.ndarray] | None]
        errors: list[BaseException | None] | None = None
        try:
            if len(batch) == 1:
                inputs = batch[0].inputs
            else:
                inputs = {name: np.concatenate([r.inputs[name] for r in batch]) for name in batch[0].inputs}
            results = list(self._split(self._predict(inputs), rows))
        except BaseException as exc:  # noqa: BLE001 - every failure is delivered to its requests
            if len(batch) == 1:
                results, errors = [None], [self._wrap(exc)]
            else:
                _log.warning("batch_failed_retrying_alone", batcher=self.name, requests=len(batch), error=repr(exc))
                results, errors = self._one_by_one(batch)
        elapsed = time.perf_counter() - started
        if self._on_batch is not None:
            try:
                self._on_batch(sum(rows), elapsed)
            except Exception:  # noqa: BLE001 - metrics must not break inference
                _log.exception("on_batch_failed", batcher=self.name)
        loop = self._loop
        assert loop is not None
        with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
            loop.call_soon_threadsafe(self._complete, batch, results, errors, elapsed)

    def _one_by_one(
        self, batch: tuple[_Request, ...]
    ) -> tuple[list[dict[str, np.ndarray] | None], list[BaseException | None]]:
        results: list[dict[str, np.ndarray] | None] = []
        errors: list[BaseException | None] = []
        for request in batch:
            if request.future.done():  # cancelled meanwhile: not worth running
                results.append(None)
                errors.append(None)
                continue
            try:
                results.append(self._split(self._predict(request.inputs), [request.rows])[0])
                errors.append(None)
            except BaseException as exc:  # noqa: BLE001
                results.append(None)
                errors.append(self._wrap(exc))
        return results, errors

    def _split(self, outputs: dict[str, np.ndarray], rows: list[int]) -> list[dict[str, np.ndarray]]:
        total = sum(rows)
        arrays = {}
        for name, value in outputs.items():
            array = value if isinstance(value, np.ndarray) else np.asarray(value)
            if array.ndim == 0 or array.shape[0] != total:
                raise BackendFailure(
                    f"engine '{self.name}' returned output '{name}' with shape {list(array.shape)} "
                    f"for a batch of {total} rows"
                )
            arrays[name] = array
        if len(rows) == 1:
            return [arrays]
        parts: list[dict[str, np.ndarray]] = []
        start = 0
        for count in rows:
            stop = start + count
            parts.append({name: array[start:stop] for name, array in arrays.items()})
            start = stop
        return parts

    def _wrap(self, exc: BaseException) -> BaseException:
        if isinstance(exc, ModelportError):
            return exc
        error = BackendFailure(f"inference failed in '{self.name}' ({type(exc).__name__})")
        error.__cause__ = exc
        return error

    # -- back on the event loop -------------------------------------------------------------------------
    def _complete(
        self,
        batch: tuple[_Request, ...],
        results: list[dict[str, np.ndarray] | None],
        errors: list[BaseException | None] | None,
        elapsed: float,
    ) -> None:
        self._running.discard(batch)
        self._free += 1
        self._batch_seconds = elapsed if not self._batch_seconds else 0.8 * self._batch_seconds + 0.2 * elapsed
        for index, request in enumerate(batch):
            request.state = _GONE
            future = request.future
            if future.done():
                continue
            error = errors[index] if errors is not None else None
            if error is not None:
                future.set_exception(error)
            else:
                result = results[index]
                if result is None:
                    future.set_exception(BackendFailure(f"inference failed in '{self.name}'"))
                else:
                    future.set_result(result)
        if self._waiting in (_WORKER, _LINGER) or self._stopping:
            self._wake.set()
