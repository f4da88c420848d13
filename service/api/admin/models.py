"""``/admin/models``: create, list and describe models."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from registry_db.records import Principal
from registry_db.repository import Registry
from service.api.admin._base import ADMIN_DEPENDENCIES, ADMIN_GUARDS, ADMIN_SECURITY
from service.api.responses import errors
from service.schemas.admin import CreateModelBody, ModelDetailOut, ModelOut, SplitItem, VersionOut

__all__ = ("ModelsController",)


class ModelsController(Controller):
    path = "/admin/models"
    tags = ["admin: models"]
    dependencies = ADMIN_DEPENDENCIES
    guards = ADMIN_GUARDS
    security = ADMIN_SECURITY

    @get("", summary="List models", responses=errors(401, 403, 503))
    async def list_models(
        self, registry: NamedDependency[Registry], reader: NamedDependency[Principal]
    ) -> list[ModelOut]:
        return [ModelOut.of(m) for m in await registry.catalog.list_models()]

    @post("", summary="Create a model", status_code=201, responses=errors(400, 401, 403, 409, 503))
    async def create_model(
        self, registry: NamedDependency[Registry], admin: NamedDependency[Principal], data: JSONBody[CreateModelBody]
    ) -> ModelOut:
        record = await registry.catalog.create_model(data.name, description=data.description, actor=admin.name)
        return ModelOut.of(record)

    @get(
        "/{model_name:str}",
        summary="Describe a model: versions, aliases, traffic",
        responses=errors(401, 403, 404, 503),
    )
    async def get_model(
        self, registry: NamedDependency[Registry], reader: NamedDependency[Principal], model_name: FromPath[str]
    ) -> ModelDetailOut:
        model = await registry.catalog.get_model(model_name)
        versions = await registry.catalog.list_versions(model_name)
        aliases = await registry.routing.list_aliases(model_name)
        traffic = await registry.routing.get_traffic(model_name)
        return ModelDetailOut(
            model=ModelOut.of(model),
            versions=[VersionOut.of(v) for v in versions],
            aliases={a.alias: a.version for a in aliases},
            traffic=[SplitItem(e.version, e.weight) for e in traffic.splits] if traffic else [],
        )
