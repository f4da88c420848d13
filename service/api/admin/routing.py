"""Aliases (promote / roll back), traffic splits and per-version A/B statistics."""

from __future__ import annotations

import socket

from litestar import Controller, delete, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from registry_db.records import Principal
from registry_db.repository import Registry
from service.api.admin._base import ADMIN_DEPENDENCIES, ADMIN_GUARDS, ADMIN_SECURITY
from service.api.responses import errors
from service.management.operations import RoutingOperations
from service.observability.ab import compare_arms
from service.observability.stats import StatsBook
from service.schemas.admin import AliasBody, AliasOut, SplitItem, StatsOut, TrafficBody, TrafficOut

__all__ = ("RoutingController",)


class RoutingController(Controller):
    path = "/admin/models/{model_name:str}"
    tags = ["admin: routing"]
    dependencies = ADMIN_DEPENDENCIES
    guards = ADMIN_GUARDS
    security = ADMIN_SECURITY

    @put(
        "/aliases/{alias:str}",
        summary="Point an alias at a version (promote / roll back)",
        responses=errors(400, 401, 403, 404, 409, 422, 503),
    )
    async def set_alias(
        self,
        operations: NamedDependency[RoutingOperations],
        admin: NamedDependency[Principal],
        model_name: FromPath[str],
        alias: FromPath[str],
        data: JSONBody[AliasBody],
    ) -> AliasOut:
        record = await operations.promote(model_name, alias, data.version, actor=admin.name)
        return AliasOut(record.model_name, record.alias, record.version)

    @delete("/aliases/{alias:str}", summary="Remove an alias", status_code=204, responses=errors(401, 403, 404, 503))
    async def delete_alias(
        self,
        operations: NamedDependency[RoutingOperations],
        admin: NamedDependency[Principal],
        model_name: FromPath[str],
        alias: FromPath[str],
    ) -> None:
        await operations.remove_alias(model_name, alias, actor=admin.name)

    @get("/traffic", summary="Current traffic split", responses=errors(401, 403, 404, 503))
    async def get_traffic(
        self, registry: NamedDependency[Registry], reader: NamedDependency[Principal], model_name: FromPath[str]
    ) -> TrafficOut:
        await registry.catalog.get_model(model_name)
        return TrafficOut.of(await registry.routing.get_traffic(model_name), model_name)

    @put(
        "/traffic",
        summary="Set the weighted A/B split (weights sum to 100)",
        responses=errors(400, 401, 403, 404, 409, 422, 503),
    )
    async def set_traffic(
        self,
        operations: NamedDependency[RoutingOperations],
        admin: NamedDependency[Principal],
        model_name: FromPath[str],
        data: JSONBody[TrafficBody],
    ) -> TrafficOut:
        splits = [(s.version, s.weight) for s in data.splits]
        record = await operations.set_traffic(model_name, splits, actor=admin.name)
        return TrafficOut.of(record, model_name)

    @delete(
        "/traffic",
        summary="Clear the split (unversioned calls follow 'production')",
        status_code=204,
        responses=errors(401, 403, 404, 503),
    )
    async def clear_traffic(
        self,
        operations: NamedDependency[RoutingOperations],
        admin: NamedDependency[Principal],
        model_name: FromPath[str],
    ) -> None:
        await operations.clear_traffic(model_name, actor=admin.name)

    @get(
        "/stats",
        summary="Per-version requests, errors, latency percentiles, predictions; A/B comparison",
        responses=errors(401, 403, 404, 503),
    )
    async def stats(
        self,
        registry: NamedDependency[Registry],
        stats: NamedDependency[StatsBook],
        reader: NamedDependency[Principal],
        model_name: FromPath[str],
    ) -> StatsOut:
        await registry.catalog.get_model(model_name)
        traffic = await registry.routing.get_traffic(model_name)
        versions = stats.for_model(model_name)
        splits = [SplitItem(e.version, e.weight) for e in traffic.splits] if traffic else []
        return StatsOut(
            model_name=model_name,
            replica=socket.gethostname(),
            versions=versions,
            traffic=splits,
            comparison=compare_arms(versions, [s.version for s in splits]),
        )
