"""Routing changes that must not break serving: promote, split, archive.

A promotion or split first loads and warms the target versions in this worker; if one cannot load, the
registry is left as it was and the caller gets the reason. After a change this worker refreshes its
routing at once; other workers and replicas follow within ``registry_poll_interval_s``.
"""

from __future__ import annotations

from collections.abc import Sequence

from registry_db.records import AliasRecord, Principal, TrafficRecord, VersionRecord
from registry_db.validation import validate_alias
from service.errors import ArtifactRejected, EngineUnavailable
from service.runtime import Runtime

__all__ = ("archive", "clear_traffic", "promote", "remove_alias", "set_traffic")


async def _ensure_servable(rt: Runtime, model: str, versions: Sequence[str]) -> None:
    assert rt.services is not None and rt.pool is not None
    for version in versions:
        record = await rt.services.registry.catalog.get_version(model, version)
        if record.status != "active":
            continue  # the registry refuses it with a clear message
        try:
            await rt.pool.acquire(record, retry_failed=True)
        except EngineUnavailable as exc:
            raise ArtifactRejected(f"not changed: {exc.message}") from None


async def _refresh(rt: Runtime) -> None:
    if rt.routing is not None:
        await rt.routing.refresh()


async def promote(rt: Runtime, model: str, alias: str, version: str, principal: Principal) -> AliasRecord:
    validate_alias(alias)
    await _ensure_servable(rt, model, [version])
    assert rt.services is not None
    record = await rt.services.registry.routing.set_alias(model, alias, version, actor=principal.name)
    await _refresh(rt)
    return record


async def remove_alias(rt: Runtime, model: str, alias: str, principal: Principal) -> None:
    assert rt.services is not None
    await rt.services.registry.routing.delete_alias(model, alias, actor=principal.name)
    await _refresh(rt)


async def set_traffic(
    rt: Runtime, model: str, splits: Sequence[tuple[str, int]], principal: Principal
) -> TrafficRecord:
    await _ensure_servable(rt, model, [version for version, _ in splits])
    assert rt.services is not None
    record = await rt.services.registry.routing.set_traffic(model, splits, actor=principal.name)
    await _refresh(rt)
    return record


async def clear_traffic(rt: Runtime, model: str, principal: Principal) -> None:
    assert rt.services is not None
    await rt.services.registry.routing.clear_traffic(model, actor=principal.name)
    await _refresh(rt)


async def archive(rt: Runtime, model: str, version: str, principal: Principal) -> VersionRecord:
    assert rt.services is not None
    record = await rt.services.registry.catalog.archive_version(model, version, actor=principal.name)
    await _refresh(rt)
    return record
