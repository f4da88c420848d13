"""Everything one server worker holds while it runs: built whole, then started and stopped by the lifespan.

:meth:`Runtime.build` wires every part (no I/O beyond creating the data directory: database engines connect
lazily), so no part is ever missing; :meth:`Runtime.start` migrates the embedded database, loads and warms
the routed engines and starts the registry watcher; :meth:`Runtime.stop` drains and closes.
:func:`open_runtime` does both for embedders and tests.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass, field

import structlog

from registry_db.migrate import current_async, head_revision
from service import collector
from service.context import Services
from service.experiments.wiring import Experiments
from service.inference.cpu_budget import engine_threads, process_cpu_budget
from service.inference.dataplane import EXTENSIONS, DataPlane
from service.inference.engine_pool import EnginePool
from service.inference.heap import release_memory
from service.inference.routing_state import RoutingState
from service.inference.shared_memory import SharedMemoryRegistry
from service.management.operations import RoutingOperations
from service.observability.metrics import Metrics
from service.observability.observers import default_observers
from service.plugins import PluginRegistry
from service.security.auth import Authenticator
from service.security.shared_memory_access import SharedMemoryAccess
from service.settings import Settings

__all__ = ("Runtime", "open_runtime")

_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Runtime:
    """One worker's services, engines, routing, data plane and metrics."""

    settings: Settings
    services: Services
    metrics: Metrics
    experiments: Experiments
    pool: EnginePool
    routing: RoutingState
    dataplane: DataPlane
    auth: Authenticator
    operations: RoutingOperations
    shared_memory: SharedMemoryAccess
    """Triton's system shared-memory extension: this worker's regions and who may use them."""
    started_at: float = field(default_factory=time.time)
    collector_tunings: list[collector.CollectorTuning] = field(default_factory=list, repr=False)
    """What :meth:`start` changed in the garbage collector, undone by :meth:`stop` (a started runtime holds one)."""

    @classmethod
    def build(cls, settings: Settings, *, plugins: PluginRegistry | None = None) -> Runtime:
        """Wire every part from the settings; nothing connects until :meth:`start`."""
        services = Services.build(settings, plugins=plugins)
        metrics = Metrics()
        services.store.listener = metrics.on_artifact_event
        pool = EnginePool(settings=settings, store=services.store, plugins=services.plugins, metrics=metrics)
        routing = RoutingState(
            registry=services.registry,
            pool=pool,
            metrics=metrics,
            poll_interval_s=settings.registry_poll_interval_s,
            database_url=settings.resolved_database_url,
        )
        admin_token = settings.admin_token.get_secret_value() if settings.admin_token else None
        # a routing change first loads and warms its targets here, so this worker serves them at once
        ensure_loads = functools.partial(pool.acquire, retry_failed=True)
        operations = RoutingOperations(services.registry, ensure_loads=ensure_loads, after_change=routing.refresh)
        experiments = Experiments.build(
            settings, registry=services.registry, metrics=metrics, routing=routing, operations=operations
        )
        auth = Authenticator(registry=services.registry, admin_token=admin_token)
        shared_memory = SharedMemoryAccess(
            SharedMemoryRegistry(max_regions=settings.shm_max_regions, max_bytes=settings.shm_max_bytes),
            enabled=settings.shm_enabled,
            workers=settings.workers,
            auth=auth,
        )
        dataplane = DataPlane(
            routing=routing,
            pool=pool,
            plugins=services.plugins,
            observers=(*default_observers(metrics), *experiments.observers(settings)),
            extensions=(*EXTENSIONS, *shared_memory.extensions),
        )
        experiments.bind(dataplane, settings)
        return cls(
            settings=settings,
            services=services,
            metrics=metrics,
            experiments=experiments,
            pool=pool,
            routing=routing,
            dataplane=dataplane,
            auth=auth,
            operations=operations,
            shared_memory=shared_memory,
        )

    async def start(self) -> None:
        """Open the registry (migrating embedded SQLite), load and warm routed engines, then report ready."""
        url = self.settings.resolved_database_url
        current = await current_async(url)
        if current != head_revision() and url.startswith("sqlite"):
            from registry_db.migrate import upgrade_async  # Alembic is loaded only when there is work for it

            await upgrade_async(url)
        elif current != head_revision():
            _log.warning(
                "registry_schema_not_at_head", current=current, head=head_revision(), hint="run 'modelport db upgrade'"
            )
        budget = process_cpu_budget()
        self.metrics.cpu_budget.set(budget.cpus)
        _log.info(
            "cpu_budget",
            cpus=budget.cpus,
            affinity=budget.affinity,
            quota=budget.quota,
            intra_op_threads=engine_threads(workers=self.settings.workers, configured=self.settings.intra_op_threads),
            spinning=self.settings.thread_spinning,
        )
        stale = await asyncio.to_thread(self.services.store.remove_stale_temp_files)  # killed uploads' .part files
        if stale:
            _log.info("stale_temp_files_removed", count=stale)
        await self.routing.refresh(force=True)
        self.routing.start()
        self.experiments.start()
        # start-up's garbage collected and the survivors frozen (service/collector.py), then what that freed and
        # the import-time code leave RSS before traffic arrives (service/inference/heap.py)
        self.collector_tunings.append(
            collector.tune(freeze=self.settings.gc_freeze, gen0_threshold=self.settings.gc_gen0_threshold)
        )
        released_kb = await asyncio.to_thread(release_memory, cold_pages=self.settings.release_cold_pages)
        self.dataplane.ready = True
        self.metrics.ready.set(1)
        _log.info(
            "ready",
            engines=len(self.pool.loaded_keys),
            generation=self.routing.snapshot.generation,
            released_mb=round(released_kb / 1024, 1),
        )

    def begin_drain(self) -> None:
        """Readiness goes false first so load balancers stop sending; in-flight work continues."""
        self.dataplane.ready = False
        self.metrics.ready.set(0)
        _log.info("draining", inflight=self.dataplane.inflight)

    async def stop(self) -> None:
        """Drain in-flight requests (bounded by ``drain_timeout_s``), then close engines and the registry."""
        self.begin_drain()
        if not await self.dataplane.drained(self.settings.drain_timeout_s):
            _log.warning("drain_timeout", inflight=self.dataplane.inflight)
        await self.experiments.stop()
        await self.routing.stop()
        await self.pool.close()
        self.shared_memory.registry.close()
        await self.services.close()
        while self.collector_tunings:
            collector.release(self.collector_tunings.pop())
        _log.info("stopped")


async def open_runtime(settings: Settings, *, plugins: PluginRegistry | None = None) -> Runtime:
    """A started runtime (build + start); close it with :meth:`Runtime.stop`."""
    runtime = Runtime.build(settings, plugins=plugins)
    await runtime.start()
    return runtime
