"""Triton's HTTP extensions over the same repository and statistics as the gRPC edge: statistics, model repository
and model configuration, in the JSON shapes ``tritonclient.http`` reads.

Load and unload act on this replica only (load: load and warm the routed versions; unload: drop the engines;
routing is unchanged, so the next call loads again) and need an admin key; see docs/api.md.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from service.api.deps import provide_runtime, routing_key_of
from service.api.responses import errors
from service.errors import InvalidInput, NotImplementedFeature
from service.inference.repository import ModelRepository
from service.observability.triton_stats import VersionStatistics

__all__ = ("V2ExtensionsController",)


def provide_repository(state: State) -> ModelRepository:
    runtime = provide_runtime(state)
    return ModelRepository(
        dataplane=runtime.dataplane,
        routing=runtime.routing,
        pool=runtime.pool,
        metrics=runtime.metrics,
        settings=runtime.settings,
    )


def _config_type(datatype: str) -> str:
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def _zero() -> dict[str, int]:
    return {"count": 0, "ns": 0}


def _stats(found: list[VersionStatistics]) -> dict[str, Any]:
    """Triton's statistics document; the breakdowns nothing here times per request are zeros, not guesses."""
    return {
        "model_stats": [
            {
                "name": s.name,
                "version": s.version,
                "last_inference": 0,
                "inference_count": s.inference_count,
                "execution_count": s.execution_count,
                "inference_stats": {
                    "success": {"count": s.success.count, "ns": s.success.ns},
                    "fail": {"count": s.fail.count, "ns": s.fail.ns},
                    "queue": _zero(),
                    "compute_input": _zero(),
                    "compute_infer": _zero(),
                    "compute_output": _zero(),
                    "cache_hit": _zero(),
                    "cache_miss": _zero(),
                },
                "batch_stats": [],
            }
            for s in found
        ]
    }


async def _json_object(request: Request[Any, Any, Any]) -> dict[str, Any]:
    body = await request.body()
    if not body.strip():
        return {}
    import msgspec

    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object")
    return data


class V2ExtensionsController(Controller):
    path = "/v2"
    tags = ["inference (V2): Triton extensions"]
    dependencies = {"repository": Provide(provide_repository, sync_to_thread=False)}

    @get("/models/stats", summary="Statistics of every model version (this worker)", responses=errors(500))
    async def all_stats(self, repository: NamedDependency[ModelRepository]) -> dict[str, Any]:
        return _stats(await repository.statistics("", None))

    @get("/models/{model_name:str}/stats", summary="Statistics of a model's versions", responses=errors(404))
    async def model_stats(
        self, repository: NamedDependency[ModelRepository], model_name: FromPath[str]
    ) -> dict[str, Any]:
        return _stats(await repository.statistics(model_name, None))

    @get(
        "/models/{model_name:str}/versions/{version:str}/stats",
        summary="Statistics of one version",
        responses=errors(404),
    )
    async def version_stats(
        self, repository: NamedDependency[ModelRepository], model_name: FromPath[str], version: FromPath[str]
    ) -> dict[str, Any]:
        return _stats(await repository.statistics(model_name, version))

    async def _config(
        self, repository: ModelRepository, request: Request[Any, Any, Any], model: str, version: str | None
    ) -> dict[str, Any]:
        found = await repository.config(model, version, routing_key_of(request))
        config: dict[str, Any] = {
            "name": found.name,
            "platform": found.platform,
            "backend": found.backend,
            "max_batch_size": found.max_batch_size,
            "input": [
                {"name": s.name, "data_type": _config_type(s.datatype), "dims": list(s.shape)} for s in found.inputs
            ],
            "output": [
                {"name": s.name, "data_type": _config_type(s.datatype), "dims": list(s.shape)} for s in found.outputs
            ],
        }
        if found.max_batch_size:
            config["dynamic_batching"] = {
                "max_queue_delay_microseconds": found.max_queue_delay_us,
                "default_queue_policy": {"max_queue_size": found.max_queue_size},
            }
        return config

    @get("/models/{model_name:str}/config", summary="Triton-shaped model configuration", responses=errors(404))
    async def config(
        self, request: Request[Any, Any, Any], repository: NamedDependency[ModelRepository], model_name: FromPath[str]
    ) -> dict[str, Any]:
        return await self._config(repository, request, model_name, None)

    @get(
        "/models/{model_name:str}/versions/{version:str}/config",
        summary="Triton-shaped configuration of one version",
        responses=errors(404),
    )
    async def version_config(
        self,
        request: Request[Any, Any, Any],
        repository: NamedDependency[ModelRepository],
        model_name: FromPath[str],
        version: FromPath[str],
    ) -> dict[str, Any]:
        return await self._config(repository, request, model_name, version)

    @post("/repository/index", summary="Every model version with its state on this replica", status_code=200)
    async def index(
        self, request: Request[Any, Any, Any], repository: NamedDependency[ModelRepository]
    ) -> list[dict[str, str]]:
        ready_only = bool((await _json_object(request)).get("ready", False))
        return [
            {"name": e.name, "version": e.version, "state": e.state, "reason": e.reason}
            for e in repository.index(ready_only=ready_only)
        ]

    @post(
        "/repository/models/{model_name:str}/load",
        summary="Load and warm the model's routed versions on this replica (admin key)",
        status_code=200,
        responses=errors(400, 401, 403, 404, 501, 503),
        security=[{"bearer": []}],
    )
    async def load(
        self, request: Request[Any, Any, Any], repository: NamedDependency[ModelRepository], model_name: FromPath[str]
    ) -> None:
        await provide_runtime(request.app.state).auth.require(request.headers.get("authorization"), "admin")
        if (await _json_object(request)).get("parameters"):
            raise NotImplementedFeature(
                "loading with a config or files is not supported: register versions through the admin API "
                "(POST /admin/models/{name}/versions)"
            )
        await repository.load(model_name)

    @post(
        "/repository/models/{model_name:str}/unload",
        summary="Drop this replica's engines of the model; routing is unchanged (admin key)",
        status_code=200,
        responses=errors(401, 403, 404),
        security=[{"bearer": []}],
    )
    async def unload(
        self, request: Request[Any, Any, Any], repository: NamedDependency[ModelRepository], model_name: FromPath[str]
    ) -> None:
        await provide_runtime(request.app.state).auth.require(request.headers.get("authorization"), "admin")
        await _json_object(request)  # tritonclient sends {"parameters": {"unload_dependents": false}}
        repository.unload(model_name)
