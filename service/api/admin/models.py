"""``/admin/models``: create, list and describe models."""

from __future__ import annotations

from litestar import Controller, get, post

from registry_db.records import Principal
from service.api.admin._base import ADMIN_DEPENDENCIES
from service.api.responses import errors
from service.runtime import Runtime
from service.schemas.admin import CreateModelBody, ModelDetailOut, ModelOut, SplitItem, VersionOut

__all__ = ("ModelsController",)


class ModelsController(Controller):
    path = "/admin/models"
    tags = ["admin: models"]
    dependencies = ADMIN_DEPENDENCIES

    @get("", summary="List models", responses=errors(401, 403, 503))
    async def list_models(self, rt: Runtime, reader: Principal) -> list[ModelOut]:
        assert rt.services is not None
        return [ModelOut.of(m) for m in await rt.services.registry.catalog.list_models()]

    @post("", summary="Create a model", status_code=201, responses=errors(400, 401, 403, 409, 503))
    async def create_model(self, rt: Runtime, admin: Principal, data: CreateModelBody) -> ModelOut:
        assert rt.services is not None
        record = await rt.services.registry.catalog.create_model(
            data.name, description=data.description, actor=admin.name
        )
        return ModelOut.of(record)

    @get(
        "/{model_name:str}",
        summary="Describe a model: versions, aliases, traffic",
        responses=errors(401, 403, 404, 503),
    )
    async def get_model(self, rt: Runtime, reader: Principal, model_name: str) -> ModelDetailOut:
        assert rt.services is not None
        registry = rt.services.registry
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
