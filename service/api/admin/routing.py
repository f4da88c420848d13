"""Aliases (promote / roll back), traffic splits and per-version A/B statistics."""

from __future__ import annotations

import socket

from litestar import Controller, delete, get, put

from registry_db.records import Principal
from service.api.admin._base import ADMIN_DEPENDENCIES
from service.api.responses import errors
from service.management import operations
from service.observability.ab import compare_arms
from service.runtime import Runtime
from service.schemas.admin import AliasBody, AliasOut, SplitItem, StatsOut, TrafficBody, TrafficOut

__all__ = ("RoutingController",)


class RoutingController(Controller):
    path = "/admin/models/{model_name:str}"
    tags = ["admin: routing"]
    dependencies = ADMIN_DEPENDENCIES

    @put(
        "/aliases/{alias:str}",
        summary="Point an alias at a version (promote / roll back)",
        responses=errors(400, 401, 403, 404, 409, 422, 503),
    )
    async def set_alias(self, rt: Runtime, admin: Principal, model_name: str, alias: str, data: AliasBody) -> AliasOut:
        record = await operations.promote(rt, model_name, alias, data.version, admin)
        return AliasOut(record.model_name, record.alias, record.version)

    @delete("/aliases/{alias:str}", summary="Remove an alias", status_code=204, responses=errors(401, 403, 404, 503))
    async def delete_alias(self, rt: Runtime, admin: Principal, model_name: str, alias: str) -> None:
        await operations.remove_alias(rt, model_name, alias, admin)

    @get("/traffic", summary="Current traffic split", responses=errors(401, 403, 404, 503))
    async def get_traffic(self, rt: Runtime, reader: Principal, model_name: str) -> TrafficOut:
        assert rt.services is not None
        await rt.services.registry.catalog.get_model(model_name)
        return TrafficOut.of(await rt.services.registry.routing.get_traffic(model_name), model_name)

    @put(
        "/traffic",
        summary="Set the weighted A/B split (weights sum to 100)",
        responses=errors(400, 401, 403, 404, 409, 422, 503),
    )
    async def set_traffic(self, rt: Runtime, admin: Principal, model_name: str, data: TrafficBody) -> TrafficOut:
        record = await operations.set_traffic(rt, model_name, [(s.version, s.weight) for s in data.splits], admin)
        return TrafficOut.of(record, model_name)

    @delete(
        "/traffic",
        summary="Clear the split (unversioned calls follow 'production')",
        status_code=204,
        responses=errors(401, 403, 404, 503),
    )
    async def clear_traffic(self, rt: Runtime, admin: Principal, model_name: str) -> None:
        await operations.clear_traffic(rt, model_name, admin)

    @get(
        "/stats",
        summary="Per-version requests, errors, latency percentiles, predictions; A/B comparison",
        responses=errors(401, 403, 404, 503),
    )
    async def stats(self, rt: Runtime, reader: Principal, model_name: str) -> StatsOut:
        assert rt.services is not None
        await rt.services.registry.catalog.get_model(model_name)
        traffic = await rt.services.registry.routing.get_traffic(model_name)
        versions = rt.stats.for_model(model_name)
        splits = [SplitItem(e.version, e.weight) for e in traffic.splits] if traffic else []
        return StatsOut(
            model_name=model_name,
            replica=socket.gethostname(),
            versions=versions,
            traffic=splits,
            comparison=compare_arms(versions, [s.version for s in splits]),
        )
