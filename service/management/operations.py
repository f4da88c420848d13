"""Routing changes that must not break serving: promote, remove an alias, split, clear a split, archive.

Shared by the admin API and the CLI, so both refuse the same things: a promotion or split first proves that
every target version loads (the server's check loads and warms it in this worker; the CLI's loads it once
and closes it), and if one cannot, the registry is left as it was and the caller gets the reason. After a
change the server refreshes its routing at once; other workers and replicas follow within
``registry_poll_interval_s``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from registry_db.records import AliasRecord, TrafficRecord, VersionRecord
from registry_db.repository import Registry
from registry_db.validation import validate_alias, validate_splits
from service.errors import ArtifactRejected, EngineUnavailable
from service.inference.engine_pool import EnginePool
from service.observability.metrics import Metrics

if TYPE_CHECKING:
    from service.context import Services

__all__ = ("LoadCheck", "RoutingOperations", "checked_by_loading")

LoadCheck = Callable[[VersionRecord], Awaitable[object]]
"""Proves a version can serve (loads it); raises EngineUnavailable saying why not."""


@contextlib.asynccontextmanager
async def checked_by_loading(services: Services) -> AsyncIterator[LoadCheck]:
    """The server's load check for a process that serves nothing (the CLI): a private engine pool that loads,
    verifies and warms each target exactly as a server worker would, closed afterwards."""
    pool = EnginePool(settings=services.settings, store=services.store, plugins=services.plugins, metrics=Metrics())
    try:
        yield functools.partial(pool.acquire, retry_failed=True)
    finally:
        await pool.close()


async def _nothing() -> None:
    return None


class RoutingOperations:
    """The routing verbs over the registry, each audited as ``actor``."""

    def __init__(
        self,
        registry: Registry,
        *,
        ensure_loads: LoadCheck,
        after_change: Callable[[], Awaitable[object]] = _nothing,
    ) -> None:
        self._registry = registry
        self._ensure_loads = ensure_loads
        self._after_change = after_change

    @property
    def registry(self) -> Registry:
        return self._registry

    async def _ensure_servable(self, model: str, versions: Sequence[str]) -> None:
        for version in versions:
            record = await self._registry.catalog.get_version(model, version)
            if record.status != "active":
                continue  # the registry refuses it with a clear message
            try:
                await self._ensure_loads(record)
            except EngineUnavailable as exc:
                raise ArtifactRejected(f"not changed: {exc.message}") from None

    async def promote(self, model: str, alias: str, version: str, *, actor: str) -> AliasRecord:
        validate_alias(alias)
        await self._ensure_servable(model, [version])
        record = await self._registry.routing.set_alias(model, alias, version, actor=actor)
        await self._after_change()
        return record

    async def remove_alias(self, model: str, alias: str, *, actor: str) -> None:
        await self._registry.routing.delete_alias(model, alias, actor=actor)
        await self._after_change()

    async def set_traffic(
        self,
        model: str,
        splits: Sequence[tuple[str, int]],
        *,
        actor: str,
        shadow: tuple[str, int] | None = None,
    ) -> TrafficRecord:
        validate_splits(splits)  # a malformed split is refused as such, before anything loads
        targets = [version for version, _ in splits] + ([shadow[0]] if shadow is not None else [])
        await self._ensure_servable(model, targets)
        record = await self._registry.routing.set_traffic(model, splits, actor=actor, shadow=shadow)
        await self._after_change()
        return record

    async def clear_traffic(self, model: str, *, actor: str) -> None:
        await self._registry.routing.clear_traffic(model, actor=actor)
        await self._after_change()

    async def registered(self) -> None:
        """A version was registered: let routing know about it now (it routes nothing until promoted)."""
        await self._after_change()

    async def archive(self, model: str, version: str, *, actor: str) -> VersionRecord:
        record = await self._registry.catalog.archive_version(model, version, actor=actor)
        await self._after_change()
        return record
