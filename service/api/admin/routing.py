"""Aliases (promote / roll back), traffic splits and per-version A/B statistics."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, delete, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from registry_db.records import Principal
from registry_db.repository import Registry
from service.api.admin._base import ADMIN_DEPENDENCIES, ADMIN_GUARDS
from service.api.responses import errors
from service.experiments.wiring import Experiments
from service.management.operations import RoutingOperations
from service.schemas.admin import AliasBody, AliasOut, TrafficBody, TrafficOut

__all__ = ("RoutingController",)


class RoutingController(Controller):
    path = "/admin/models/{model_name:str}"
    tags = ["admin: routing"]
    dependencies = ADMIN_DEPENDENCIES
    guards = ADMIN_GUARDS

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
        shadow = (data.shadow.version, data.shadow.percent) if data.shadow is not None else None
        record = await operations.set_traffic(model_name, splits, actor=admin.name, shadow=shadow)
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
        summary="Fleet-wide per-version figures, their timeline, and always-valid comparisons of the arms",
        description=(
            "Summed over every worker of every replica from the registry database (durable; current to within "
            "MODELPORT_STATS_FLUSH_INTERVAL_S). `window` (seconds) bounds the period, `bucket` (seconds) the "
            "timeline's resolution, `control` overrides the arm the others are compared with (default: "
            "production when it is in the split, else the heaviest arm)."
        ),
        responses=errors(400, 401, 403, 404, 503),
    )
    async def stats(
        self,
        registry: NamedDependency[Registry],
        experiments: NamedDependency[Experiments],
        reader: NamedDependency[Principal],
        model_name: FromPath[str],
        window: FromQuery[Annotated[int, Parameter(ge=60, le=400 * 86400)]] = 86400,
        bucket: FromQuery[Annotated[int, Parameter(ge=1, le=86400)]] = 60,
        control: FromQuery[str | None] = None,
    ) -> dict[str, Any]:
        await registry.catalog.get_model(model_name)
        traffic = await registry.routing.get_traffic(model_name)
        aliases = {a.alias: a.version for a in await registry.routing.list_aliases(model_name)}
        return await experiments.fleet.report(
            model_name,
            window_s=window,
            bucket_s=bucket,
            traffic=traffic,
            production=aliases.get("production"),
            control=control,
        )
