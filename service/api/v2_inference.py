"""Open Inference Protocol (KServe V2): health, server and model metadata, readiness and infer.

Every handler is a thin call into the data plane. ``POST .../infer`` arrives through the lean ASGI path in
production (``service.asgi``); the handlers here take the raw body and call the same edge function, and
declare the request body for OpenAPI through a dependency they never resolve.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from service.api.deps import documented_body, provide_dataplane, provide_inference, routing_key_of, serve_inference
from service.api.inference_http import InferenceHTTP
from service.api.responses import errors
from service.inference.dataplane import DataPlane, ModelDescription
from service.schemas.examples import INFER_EXAMPLE
from service.schemas.v2 import InferRequest, InferResponse, MetadataTensor, ModelMetadata, ServerMetadata

__all__ = ("V2Controller",)


def _metadata(description: ModelDescription) -> Response[ModelMetadata]:
    def tensors(specs: Any) -> list[MetadataTensor]:
        return [MetadataTensor(spec.name, spec.datatype, list(spec.shape)) for spec in specs]

    body = ModelMetadata(
        name=description.name,
        versions=list(description.versions),
        platform=description.platform,
        inputs=tensors(description.inputs),
        outputs=tensors(description.outputs),
    )
    return Response(body, headers={"X-Model-Version": description.version})


def _ready(model: str, version: str) -> Response[dict[str, Any]]:
    return Response({"name": model, "ready": True}, headers={"X-Model-Version": version})


_INFER_DEPENDENCIES = {"documented_body": Provide(documented_body(InferRequest, INFER_EXAMPLE), sync_to_thread=False)}


class V2Controller(Controller):
    path = "/v2"
    tags = ["inference (V2)"]
    dependencies = {
        "dataplane": Provide(provide_dataplane, sync_to_thread=False),
        "inference": Provide(provide_inference, sync_to_thread=False),
    }

    @get("/health/live", summary="Liveness", responses=errors(500))
    async def live(self, dataplane: NamedDependency[DataPlane]) -> dict[str, bool]:
        return {"live": dataplane.live()}

    @get("/health/ready", summary="Readiness: routed engines loaded and not draining", responses=errors(503))
    async def ready(self, dataplane: NamedDependency[DataPlane]) -> dict[str, Any]:
        return dataplane.server_ready()

    @get("", summary="Server metadata")
    async def server_metadata(self, dataplane: NamedDependency[DataPlane]) -> ServerMetadata:
        return ServerMetadata(**dataplane.server_metadata())

    @get(
        "/models/{model_name:str}",
        summary="Model metadata of the version unversioned calls go to (X-Routing-Key: that key's arm)",
        responses=errors(404, 503),
    )
    async def model_metadata(
        self, request: Request[Any, Any, Any], dataplane: NamedDependency[DataPlane], model_name: FromPath[str]
    ) -> Response[ModelMetadata]:
        return _metadata(await dataplane.model_metadata(model_name, None, routing_key_of(request)))

    @get(
        "/models/{model_name:str}/versions/{version:str}", summary="Model version metadata", responses=errors(404, 503)
    )
    async def version_metadata(
        self, dataplane: NamedDependency[DataPlane], model_name: FromPath[str], version: FromPath[str]
    ) -> Response[ModelMetadata]:
        return _metadata(await dataplane.model_metadata(model_name, version, None))

    @get(
        "/models/{model_name:str}/ready",
        summary="Model readiness (every arm loaded; with X-Routing-Key, that key's arm)",
        responses=errors(404, 503),
    )
    async def model_ready(
        self, request: Request[Any, Any, Any], dataplane: NamedDependency[DataPlane], model_name: FromPath[str]
    ) -> Response[dict[str, Any]]:
        return _ready(model_name, await dataplane.model_ready(model_name, None, routing_key_of(request)))

    @get(
        "/models/{model_name:str}/versions/{version:str}/ready",
        summary="Model version readiness",
        responses=errors(404, 503),
    )
    async def version_ready(
        self, dataplane: NamedDependency[DataPlane], model_name: FromPath[str], version: FromPath[str]
    ) -> Response[dict[str, Any]]:
        return _ready(model_name, await dataplane.model_ready(model_name, version, None))

    @post(
        "/models/{model_name:str}/infer",
        summary="Infer (routed by split / production alias; X-Routing-Key makes A/B sticky)",
        status_code=200,
        responses=errors(400, 404, 413, 415, 500, 503),
        request_max_body_size=None,
        dependencies=_INFER_DEPENDENCIES,
    )
    async def infer(
        self, request: Request[Any, Any, Any], inference: NamedDependency[InferenceHTTP], model_name: FromPath[str]
    ) -> InferResponse:
        return await serve_inference(inference, "v2_infer", request, model_name, None)  # type: ignore[return-value]

    @post(
        "/models/{model_name:str}/versions/{version:str}/infer",
        summary="Infer on one version",
        status_code=200,
        responses=errors(400, 404, 413, 415, 500, 503),
        request_max_body_size=None,
        dependencies=_INFER_DEPENDENCIES,
    )
    async def infer_version(
        self,
        request: Request[Any, Any, Any],
        inference: NamedDependency[InferenceHTTP],
        model_name: FromPath[str],
        version: FromPath[str],
    ) -> InferResponse:
        return await serve_inference(inference, "v2_infer", request, model_name, version)  # type: ignore[return-value]
