"""Everything one server worker holds while it runs, started and stopped by the app's lifespan."""

from __future__ import annotations

import asyncio
import time

import structlog

from registry_db.migrate import current_async, head_revision
from service.context import Services
from service.inference.dataplane import DataPlane
from service.inference.engine_pool import EnginePool
from service.inference.routing_state import RoutingState
from service.observability.metrics import Metrics
from service.observability.stats import StatsBook
from service.plugins import PluginRegistry
from service.security.auth import Authenticator
from service.settings import Settings

__all__ = ("Runtime",)

_log = structlog.get_logger(__name__)


class Runtime:
    """Owns services, engines, routing and metrics for one worker process."""

    def __init__(self, settings: Settings, *, plugins: PluginRegistry | None = None) -> None:
        self.settings = settings
        self.plugins = plugins
        self.metrics = Metrics()
        self.stats = StatsBook()
        self.started_at = time.time()
        self.inflight = 0
        self._idle = asyncio.Event()
        self.services: Services | None = None
        self.pool: EnginePool | None = None
        self.routing: RoutingState | None = None
        self.dataplane: DataPlane | None = None
        self.auth: Authenticator | None = None

    async def start(self) -> None:
        """Open the registry (migrating embedded SQLite), load and warm routed engines, then report ready."""
        s = self.settings
        is_sqlite = s.resolved_database_url.startswith("sqlite")
        services = await Services.open(s, plugins=self.plugins, migrate=is_sqlite)
        self.services = services
        if not is_sqlite:
            current = await current_async(s.resolved_database_url)
            if current != head_revision():
                _log.warning(
                    "registry_schema_not_at_head",
                    current=current,
                    head=head_revision(),
                    hint="run 'modelport db upgrade'",
                )
        services.store.listener = self.metrics.on_artifact_event
        self.pool = EnginePool(settings=s, store=services.store, plugins=services.plugins, metrics=self.metrics)
        self.routing = RoutingState(
            registry=services.registry,
            pool=self.pool,
            metrics=self.metrics,
            poll_interval_s=s.registry_poll_interval_s,
            database_url=s.resolved_database_url,
        )
        self.dataplane = DataPlane(routing=self.routing, pool=self.pool, metrics=self.metrics, stats=self.stats)
        admin_token = s.admin_token.get_secret_value() if s.admin_token else None
        self.auth = Authenticator(registry=services.registry, admin_token=admin_token)
        await self.routing.refresh(force=True)
        self.routing.start()
        self.dataplane.ready = True
        self.metrics.ready.set(1)
        _log.info("ready", engines=len(self.pool.loaded_keys), generation=self.routing.snapshot.generation)

    def begin_drain(self) -> None:
        """Readiness goes false first so load balancers stop sending; in-flight work continues."""
        if self.dataplane is not None:
            self.dataplane.ready = False
        self.metrics.ready.set(0)
        _log.info("draining", inflight=self.inflight)

    def enter(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    async def stop(self) -> None:
        """Drain in-flight requests (bounded by ``drain_timeout_s``), then close engines and the registry."""
        self.begin_drain()
        if self.inflight:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout=self.settings.drain_timeout_s)
            except TimeoutError:
                _log.warning("drain_timeout", inflight=self.inflight)
        if self.routing is not None:
            await self.routing.stop()
        if self.pool is not None:
            await self.pool.close()
        if self.services is not None:
            await self.services.close()
        _log.info("stopped")
