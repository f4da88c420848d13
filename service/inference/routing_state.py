"""This worker's view of the registry: the routing snapshot, cached version records, and the watcher
that keeps both current (a generation counter polled every ``registry_poll_interval_s``).

A new snapshot only takes effect after the engines it routes to are loaded and warm; a model whose new
target cannot load keeps its previous routing (reported in readiness detail, metrics and logs). While
the database is unreachable the last snapshot and the loaded engines keep serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from typing import Any

import structlog

from registry_db.errors import DatabaseUnavailable
from registry_db.errors import NotFound as RegistryNotFound
from registry_db.records import ModelRouting, RoutingSnapshot, VersionRecord
from service.background import cancel_and_wait
from service.errors import EngineUnavailable, NotFound, RegistryUnavailable
from service.inference.engine_pool import EnginePool
from service.inference.routing import choose_version, describe_version
from service.observability.metrics import Metrics

__all__ = ("RoutingState", "unknown_model")

_log = structlog.get_logger(__name__)
_MISS_REFRESH_INTERVAL_S = 0.25
HELD_BACK_RETRY_S = 30.0
"""While a model is held back, its routing is applied again this often (a transient failure clears; an
integrity failure is re-hashed at most this often)."""


def held_back_message(held_back: dict[str, str]) -> str:
    """Readiness's refusal while models are held back: which, and why (the first few)."""
    shown = "; ".join(f"'{name}': {reason[:200]}" for name, reason in sorted(held_back.items())[:5])
    more = f" and {len(held_back) - 5} more" if len(held_back) > 5 else ""
    return f"not ready: this replica cannot serve the routing the registry sets for {shown}{more}"


def unknown_model(model: str, version: str | None = None, *, active: tuple[str, ...] | None = None) -> str:
    """The message for a model or version that cannot serve, worded as Triton's begin (clients and Triton's own
    examples match on ``Request for unknown model``), our detail after it."""
    if version is None:
        return f"Request for unknown model: '{model}' is not found"
    message = f"Request for unknown model: '{model}' version {version} is not found"
    if active is not None:
        message += f" (active versions: {', '.join(active) or 'none'})"
    return message


def routed_versions(routing: ModelRouting) -> set[str]:
    """Versions an unversioned call may land on, plus every aliased version and the shadow (warmed, pinned)."""
    shadow = {routing.shadow_version} if routing.shadow_version else set()
    return {entry.version for entry in routing.splits} | set(routing.aliases.values()) | shadow


class RoutingState:
    """Resolves (model, version?, routing key) to a version record, keeping the snapshot fresh."""

    def __init__(
        self, *, registry: Any, pool: EnginePool, metrics: Metrics, poll_interval_s: float, database_url: str = ""
    ) -> None:
        self._registry = registry
        self._database_url = database_url
        self._wake = asyncio.Event()
        self._stop_listening: Any = None
        self._pool = pool
        self._metrics = metrics
        self._poll_interval_s = poll_interval_s
        self._snapshot = RoutingSnapshot(generation=-1, models={})
        self._records: dict[tuple[str, str], VersionRecord] = {}
        self._refresh_lock = asyncio.Lock()
        self._last_refresh = 0.0
        self._applied_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self.held_back: dict[str, str] = {}
        """Models whose new routing could not be applied, with the reason (readiness detail)."""
        self.last_error: str | None = None

    @property
    def snapshot(self) -> RoutingSnapshot:
        return self._snapshot

    # -- refresh ------------------------------------------------------------------------------------
    async def refresh(self, *, force: bool = False) -> bool:
        """Fetch the snapshot if the generation moved; returns whether routing changed."""
        async with self._refresh_lock:
            self._last_refresh = time.monotonic()
            try:
                generation = await self._registry.routing.generation()
                retry = self.held_back and time.monotonic() - self._applied_at > HELD_BACK_RETRY_S
                if generation == self._snapshot.generation and not force and not retry:
                    return False
                fresh = await self._registry.routing.routing_snapshot()
            except DatabaseUnavailable as exc:
                self.last_error = str(exc)
                _log.warning("registry_unreachable", error=str(exc))
                return False
            self.last_error = None
            await self._apply(fresh)
            return True

    async def _apply(self, fresh: RoutingSnapshot) -> None:
        previous = self._snapshot
        self._records.clear()
        models = dict(fresh.models)
        held: dict[str, str] = {}
        for name, routing in fresh.models.items():
            try:
                for version in sorted(routed_versions(routing)):
                    record = await self._record(name, version)
                    await self._pool.acquire(record, retry_failed=True)
            except (EngineUnavailable, NotFound, RegistryUnavailable) as exc:
                old = previous.models.get(name)
                held[name] = exc.message
                if old is not None:
                    # keep routing where it was, but know about newly registered versions
                    models[name] = replace(old, active_versions=routing.active_versions)
                _log.error("routing_held_back", model=name, reason=exc.message)
        self.held_back = held
        self._applied_at = time.monotonic()
        self._snapshot = RoutingSnapshot(generation=fresh.generation, models=models)
        self._metrics.registry_generation.set(fresh.generation)
        self._metrics.split_weight.clear()
        for name, routing in models.items():
            for entry in routing.splits:
                self._metrics.split_weight.labels(model=name, version=entry.version).set(entry.weight)
        pinned = {(name, v) for name, routing in models.items() for v in routed_versions(routing)}
        self._pool.set_pinned(pinned)
        for model, version in self._pool.loaded_keys:
            current = models.get(model)
            if current is None or version not in current.active_versions:
                self._pool.unload(model, version)  # archived or deleted
        _log.info("routing_applied", generation=fresh.generation, models=len(models), held_back=len(held))

    async def run(self) -> None:
        """Poll forever (background task of the app's lifespan); a PostgreSQL NOTIFY cuts the wait short."""
        from registry_db.notify import listen

        self._stop_listening = await listen(self._database_url, self._wake.set)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval_s)
            self._wake.clear()
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - the watcher must survive anything
                _log.exception("routing_refresh_failed")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self._stop_listening is not None:
            await self._stop_listening()

    # -- resolution ---------------------------------------------------------------------------------
    async def _record(self, model: str, version: str) -> VersionRecord:
        key = (model, version)
        record = self._records.get(key)
        if record is None:
            try:
                record = await self._registry.catalog.get_version(model, version)
            except RegistryNotFound:
                raise NotFound(unknown_model(model, version)) from None
            except DatabaseUnavailable as exc:
                raise RegistryUnavailable(f"registry unavailable: {exc}") from None
            self._records[key] = record
        return record

    async def _routing(self, model: str) -> ModelRouting:
        routing = self._snapshot.models.get(model)
        # a miss may be a model registered a moment ago: look again, unless the registry is known to be down
        # (then the watcher keeps trying, and an unknown name is answered from the snapshot without waiting)
        if (
            routing is None
            and self.last_error is None
            and time.monotonic() - self._last_refresh > _MISS_REFRESH_INTERVAL_S
        ):
            await self.refresh()
            routing = self._snapshot.models.get(model)
        if routing is None:
            raise NotFound(unknown_model(model))
        return routing

    async def resolve(
        self, model: str, version: str | None, routing_key: str | None, *, describe: bool = False
    ) -> VersionRecord:
        """The version record serving this call (``describe``: the one metadata and readiness speak for, the
        same for the same key; see :mod:`service.inference.routing`). NotFound says why when none does."""
        routing = await self._routing(model)
        if version is None:
            rule = describe_version if describe else choose_version
            chosen = rule(routing, routing_key, model=model)
            if chosen is None:
                raise NotFound(
                    f"Request for unknown model: '{model}' has no available versions: it has no traffic split "
                    "and no 'production' alias: call a specific version or promote one"
                )
            version = chosen
        elif version not in routing.active_versions:
            if self.last_error is None and time.monotonic() - self._last_refresh > _MISS_REFRESH_INTERVAL_S:
                await self.refresh()
                routing = self._snapshot.models.get(model, routing)
            if version not in routing.active_versions:
                raise NotFound(unknown_model(model, version, active=routing.active_versions))
        return await self._record(model, version)

    async def known_routing(self, model: str) -> ModelRouting:
        """The model's routing record, looking again on a miss as inference does; NotFound when unknown."""
        return await self._routing(model)

    def model_routing(self, model: str) -> ModelRouting | None:
        """The model's routing record in the current snapshot (None: unknown to this worker right now)."""
        return self._snapshot.models.get(model)
