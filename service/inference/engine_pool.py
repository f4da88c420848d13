"""Per-version engines: loaded once (concurrent callers share one load), off the event loop, LRU-capped.

Each served version owns a :class:`DynamicBatcher` that runs ``Engine.predict`` in worker threads. Versions
that an alias or split routes to are *pinned* and never evicted; the cap may be exceeded by pinned versions
rather than breaking routing.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from registry_db.errors import IntegrityError
from registry_db.records import VersionRecord
from service.errors import ArtifactRejected, EngineUnavailable
from service.inference.batching import DynamicBatcher, QueuePressure
from service.inference.heap import release_memory
from service.inference.loader import LoadedArtifact, load_engine
from service.inference.processing import compile_postprocessor, compile_preprocessor
from service.inference.validation import InputValidator
from service.observability.metrics import Metrics
from service.plugins import Engine, PluginRegistry, TensorSpec
from service.settings import Settings

__all__ = ("EnginePool", "ServedVersion")

_log = structlog.get_logger(__name__)

VersionKey = tuple[str, str]
_RETRY_FAILED_LOAD_AFTER_S = 15.0


@dataclass(slots=True)
class ServedVersion:
    """Everything the request path needs for one loaded version, built once at load time."""

    record: VersionRecord
    engine: Engine
    validator: InputValidator
    batcher: DynamicBatcher
    preprocess: Any
    postprocess: Any
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    loaded_at: float = field(default_factory=time.time)
    load_seconds: float = 0.0

    @property
    def key(self) -> VersionKey:
        return (self.record.model_name, self.record.version)


def _close_and_trim(served: ServedVersion, cold_pages: bool) -> None:
    """Close an engine, then hand the memory it freed back to the OS, and the library pages only its batches ran
    (see :mod:`service.inference.heap`)."""
    try:
        served.engine.close()
    finally:
        release_memory(cold_pages=cold_pages)


class EnginePool:
    """Loads, caches and evicts served versions for one worker process."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Any,
        plugins: PluginRegistry,
        metrics: Metrics,
        loader: Callable[..., LoadedArtifact] = load_engine,
    ) -> None:
        self._settings = settings
        self._store = store
        self._plugins = plugins
        self._metrics = metrics
        self._loader = loader
        self._served: OrderedDict[VersionKey, ServedVersion] = OrderedDict()
        self._loading: dict[VersionKey, asyncio.Future[ServedVersion]] = {}
        self._failures: dict[VersionKey, tuple[str, float]] = {}
        self._pinned: frozenset[VersionKey] = frozenset()
        self._closing: set[asyncio.Task[None]] = set()
        self.pressure = QueuePressure()
        """How many loaded engines have a full queue now (admission's first, cheapest check)."""

    # -- lookup -------------------------------------------------------------------------------------
    def get_loaded(self, model: str, version: str) -> ServedVersion | None:
        """The served version if loaded (marks it recently used), else None. Never loads."""
        served = self._served.get((model, version))
        if served is not None:
            self._served.move_to_end(served.key)
        return served

    def is_loaded(self, model: str, version: str) -> bool:
        return (model, version) in self._served

    def is_loading(self, model: str, version: str) -> bool:
        return (model, version) in self._loading

    def failure(self, model: str, version: str) -> str | None:
        """The last load error of a version, if its most recent load failed."""
        failed = self._failures.get((model, version))
        return failed[0] if failed else None

    @property
    def loaded_keys(self) -> list[VersionKey]:
        return list(self._served)

    def served_versions(self) -> list[ServedVersion]:
        return list(self._served.values())

    # -- loading ------------------------------------------------------------------------------------
    async def acquire(self, record: VersionRecord, *, retry_failed: bool = False) -> ServedVersion:
        """The served version for ``record``, loading it if needed; EngineUnavailable if it cannot load."""
        key = (record.model_name, record.version)
        served = self._served.get(key)
        if served is not None and served.record.sha256 == record.sha256:
            self._served.move_to_end(key)
            return served
        pending = self._loading.get(key)
        if pending is None:
            failed = self._failures.get(key)
            if failed and not retry_failed and time.monotonic() - failed[1] < _RETRY_FAILED_LOAD_AFTER_S:
                raise EngineUnavailable(f"model '{key[0]}' version '{key[1]}' failed to load: {failed[0]}")
            pending = asyncio.get_running_loop().create_future()
            # waiters may all be cancelled; retrieving the exception here keeps asyncio from logging it
            pending.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._loading[key] = pending
            asyncio.get_running_loop().create_task(self._load(record, pending))
        return await asyncio.shield(pending)

    async def _load(self, record: VersionRecord, done: asyncio.Future[ServedVersion]) -> None:
        key = (record.model_name, record.version)
        labels = {"model": key[0], "version": key[1]}
        try:
            served = await self._build(record)
        except BaseException as exc:  # noqa: BLE001 - every failure is reported to all waiters
            if isinstance(exc, IntegrityError):
                self._metrics.integrity_failures.labels(**labels).inc()
                message = f"artifact integrity check failed: {exc}"
            elif isinstance(exc, ArtifactRejected):
                message = exc.message
            else:
                message = f"{type(exc).__name__}: {exc}"
            self._metrics.load_failures.labels(**labels).inc()
            self._failures[key] = (message, time.monotonic())
            _log.error("engine_load_failed", model=key[0], version=key[1], error=message)
            if not done.done():
                done.set_exception(EngineUnavailable(f"model '{key[0]}' version '{key[1]}' failed to load: {message}"))
        else:
            self._failures.pop(key, None)
            old = self._served.pop(key, None)
            self._served[key] = served
            if old is not None:
                self._retire(old)
            self._metrics.loaded_engines.set(len(self._served))
            if not done.done():
                done.set_result(served)
            self._evict_over_cap(protect=key)
        finally:
            self._loading.pop(key, None)

    async def _build(self, record: VersionRecord) -> ServedVersion:
        loaded: LoadedArtifact = await asyncio.to_thread(
            self._loader,
            settings=self._settings,
            store=self._store,
            plugins=self._plugins,
            sha256=record.sha256,
            backend_name=record.backend,
            architecture=record.architecture,
            architecture_config=record.architecture_config,
            signature=record.signature,
            trusted=True,  # accepted at registration by an admin key
        )
        engine = loaded.engine
        s = self._settings
        labels = {"model": record.model_name, "version": record.version}
        batch_hist = self._metrics.batch_size.labels(**labels)
        infer_hist = self._metrics.inference_duration.labels(**labels)

        def on_batch(rows: int, seconds: float) -> None:
            batch_hist.observe(rows)
            infer_hist.observe(seconds)

        validator = InputValidator.from_specs(engine.inputs, s.max_batch_size)
        batcher = DynamicBatcher(
            engine.predict,
            # a model with a fixed batch dimension cannot have requests stacked into one batch
            max_batch_size=s.max_batch_size if validator.batchable else 1,
            max_delay_s=s.max_batch_delay_ms / 1000.0,
            max_queue=s.max_queue,
            threads=s.inference_threads,
            name=f"{record.model_name}:{record.version}",
            on_batch=on_batch,
            pressure=self.pressure,
        )
        await batcher.start()
        return ServedVersion(
            record=record,
            engine=engine,
            validator=validator,
            batcher=batcher,
            preprocess=compile_preprocessor(record.preprocessing),
            postprocess=compile_postprocessor(record.postprocessing),
            inputs=engine.inputs,
            outputs=engine.outputs,
            load_seconds=loaded.load_seconds,
        )

    # -- eviction -----------------------------------------------------------------------------------
    def set_pinned(self, keys: Iterable[VersionKey]) -> None:
        """Versions routed by an alias or split: never evicted. Called on every routing change."""
        self._pinned = frozenset(keys)
        self._evict_over_cap(protect=None)

    def _evict_over_cap(self, *, protect: VersionKey | None) -> None:
        cap = self._settings.max_loaded_engines
        for key in list(self._served):
            if len(self._served) <= cap:
                break
            if key in self._pinned or key == protect:
                continue
            self._retire(self._served.pop(key))
            _log.info("engine_evicted", model=key[0], version=key[1], reason="lru")
        self._metrics.loaded_engines.set(len(self._served))

    def unload(self, model: str, version: str) -> bool:
        """Drop a version (archived or replaced); in-flight requests finish first."""
        served = self._served.pop((model, version), None)
        if served is None:
            return False
        self._retire(served)
        self._metrics.loaded_engines.set(len(self._served))
        return True

    def _retire(self, served: ServedVersion) -> None:
        async def stop() -> None:
            try:
                await served.batcher.stop(self._settings.drain_timeout_s)
            finally:
                await asyncio.to_thread(_close_and_trim, served, self._settings.release_cold_pages)

        task = asyncio.get_running_loop().create_task(stop())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Stop every batcher (draining) and close every engine; runs at shutdown."""
        for key in list(self._served):
            self._retire(self._served.pop(key))
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        self._metrics.loaded_engines.set(0)
