"""Rollouts: start one, watch it, abort it. The controller (one per fleet, by lease) does the rest."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from registry_db.records import Principal
from registry_db.repository import Registry
from service.api.admin._base import ADMIN_DEPENDENCIES, ADMIN_GUARDS
from service.api.responses import errors
from service.experiments.wiring import Experiments
from service.schemas.rollouts import RolloutBody, RolloutOut

__all__ = ("RolloutsController",)


class RolloutsController(Controller):
    path = "/admin/models/{model_name:str}/rollouts"
    tags = ["admin: rollouts"]
    dependencies = ADMIN_DEPENDENCIES
    guards = ADMIN_GUARDS

    @post(
        "/",
        summary="Start a rollout of a candidate version (steps, hold time, samples, guards, gates)",
        status_code=201,
        responses=errors(400, 401, 403, 404, 409, 422, 503),
    )
    async def start(
        self,
        experiments: NamedDependency[Experiments],
        registry: NamedDependency[Registry],
        admin: NamedDependency[Principal],
        model_name: FromPath[str],
        data: JSONBody[RolloutBody],
    ) -> RolloutOut:
        await registry.catalog.get_model(model_name)
        record = await experiments.rollouts.start(
            model_name, data.candidate, data.control, data.plan(), actor=admin.name
        )
        return RolloutOut.of(await registry.rollouts.get(model_name, record.id))

    @get("/", summary="The model's rollouts, newest first", responses=errors(401, 403, 404, 503))
    async def list_rollouts(
        self, registry: NamedDependency[Registry], reader: NamedDependency[Principal], model_name: FromPath[str]
    ) -> list[RolloutOut]:
        await registry.catalog.get_model(model_name)
        return [RolloutOut.of(r) for r in await registry.rollouts.list(model_name)]

    @get(
        "/{rollout_id:int}",
        summary="One rollout: state, step, the evidence of each decision",
        responses=errors(401, 403, 404, 503),
    )
    async def get_rollout(
        self,
        registry: NamedDependency[Registry],
        reader: NamedDependency[Principal],
        model_name: FromPath[str],
        rollout_id: FromPath[int],
    ) -> RolloutOut:
        return RolloutOut.of(await registry.rollouts.get(model_name, rollout_id))

    @post(
        "/{rollout_id:int}/abort",
        summary="Abort a running rollout: back to the control alone",
        status_code=200,
        responses=errors(401, 403, 404, 409, 503),
    )
    async def abort(
        self,
        experiments: NamedDependency[Experiments],
        admin: NamedDependency[Principal],
        model_name: FromPath[str],
        rollout_id: FromPath[int],
    ) -> RolloutOut:
        return RolloutOut.of(await experiments.rollouts.abort(model_name, rollout_id, actor=admin.name))
