"""Open Inference Protocol (KServe V2): health, metadata, readiness and infer.

``POST .../infer`` is answered by the lean path in ``service.asgi``; the handlers here describe those
routes in OpenAPI and serve them when the Litestar app is mounted without that wrapper.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import Provide

from registry_db.records import VersionRecord
from service import __version__
from service.api.deps import provide_runtime
from service.api.inference_http import Reply
from service.api.responses import errors
from service.errors import EngineUnavailable, NotFound
from service.runtime import Runtime
from service.schemas.v2 import InferRequest, InferResponse, MetadataTensor, ModelMetadata, ServerMetadata

__all__ = ("V2Controller",)

_PLATFORMS = {
    "onnx": "onnxruntime_onnx",
    "torchscript": "pytorch_torchscript",
    "torch_export": "pytorch_export",
    "pytorch": "pytorch_state_dict",
}
EXTENSIONS = ["binary_tensor_data", "model_repository_metadata"]


def _as_response(reply: Reply) -> Response[bytes]:
    return Response(content=reply.body, status_code=reply.status, headers=reply.headers, media_type=reply.media_type)


def _tensors(record: VersionRecord, key: str) -> list[MetadataTensor]:
    return [MetadataTensor(t["name"], t["datatype"], list(t["shape"])) for t in record.signature.get(key, [])]


async def _metadata(rt: Runtime, model: str, version: str | None) -> ModelMetadata:
    assert rt.routing is not None and rt.pool is not None
    routing = rt.routing.model_versions(model)
    if routing is None:
        await rt.routing.refresh()
        routing = rt.routing.model_versions(model)
        if routing is None:
            raise NotFound(f"unknown model '{model}'")
    if version is None:
        default = routing.aliases.get("production") or (
            max(routing.splits, key=lambda e: e.weight).version if routing.splits else None
        )
        version = default or (routing.active_versions[-1] if routing.active_versions else None)
        if version is None:
            raise NotFound(f"model '{model}' has no active version")
    record = await rt.routing.resolve(model, version, None)
    served = rt.pool.get_loaded(model, record.version)
    platform = served.engine.platform if served else _PLATFORMS.get(record.backend, record.backend)
    return ModelMetadata(
        name=model,
        versions=list(routing.active_versions),
        platform=platform,
        inputs=_tensors(record, "inputs"),
        outputs=_tensors(record, "outputs"),
    )


class V2Controller(Controller):
    path = "/v2"
    tags = ["inference (V2)"]
    dependencies = {"rt": Provide(provide_runtime, sync_to_thread=False)}

    @get("/health/live", summary="Liveness", responses=errors(500))
    async def live(self) -> dict[str, bool]:
        return {"live": True}

    @get("/health/ready", summary="Readiness: routed engines loaded and not draining", responses=errors(503))
    async def ready(self, rt: Runtime) -> dict[str, Any]:
        assert rt.routing is not None
        if rt.dataplane is None or not rt.dataplane.ready:
            raise EngineUnavailable("not ready: starting up or draining", retry_after_s=1)
        return {"ready": True, "held_back": rt.routing.held_back, "generation": rt.routing.snapshot.generation}

    @get("", summary="Server metadata")
    async def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(name="modelport", version=__version__, extensions=EXTENSIONS)

    @get("/models/{model_name:str}", summary="Model metadata (default version)", responses=errors(404, 503))
    async def model_metadata(self, rt: Runtime, model_name: str) -> ModelMetadata:
        return await _metadata(rt, model_name, None)

    @get(
        "/models/{model_name:str}/versions/{version:str}", summary="Model version metadata", responses=errors(404, 503)
    )
    async def version_metadata(self, rt: Runtime, model_name: str, version: str) -> ModelMetadata:
        return await _metadata(rt, model_name, version)

    @get("/models/{model_name:str}/ready", summary="Model readiness", responses=errors(404, 503))
    async def model_ready(self, rt: Runtime, model_name: str) -> dict[str, Any]:
        return await self._ready(rt, model_name, None)

    @get(
        "/models/{model_name:str}/versions/{version:str}/ready",
        summary="Model version readiness",
        responses=errors(404, 503),
    )
    async def version_ready(self, rt: Runtime, model_name: str, version: str) -> dict[str, Any]:
        return await self._ready(rt, model_name, version)

    @staticmethod
    async def _ready(rt: Runtime, model: str, version: str | None) -> dict[str, Any]:
        assert rt.dataplane is not None
        record = await rt.routing.resolve(model, version, None) if rt.routing else None
        assert record is not None
        if not rt.dataplane.model_ready(model, version):
            raise rt.dataplane.explain_unready(model, record.version)
        return {"name": model, "ready": True}

    @post(
        "/models/{model_name:str}/infer",
        summary="Infer (routed by split / production alias; X-Routing-Key makes A/B sticky)",
        status_code=200,
        responses=errors(400, 404, 413, 415, 500, 503),
        request_max_body_size=None,
    )
    async def infer(
        self, request: Request[Any, Any, Any], rt: Runtime, model_name: str, data: InferRequest
    ) -> InferResponse:
        return await self._infer(request, rt, model_name, None, data)  # type: ignore[return-value]

    @post(
        "/models/{model_name:str}/versions/{version:str}/infer",
        summary="Infer on one version",
        status_code=200,
        responses=errors(400, 404, 413, 415, 500, 503),
        request_max_body_size=None,
    )
    async def infer_version(
        self, request: Request[Any, Any, Any], rt: Runtime, model_name: str, version: str, data: InferRequest
    ) -> InferResponse:
        return await self._infer(request, rt, model_name, version, data)  # type: ignore[return-value]

    @staticmethod
    async def _infer(
        request: Request[Any, Any, Any], rt: Runtime, model: str, version: str | None, data: InferRequest
    ) -> Response[bytes]:
        from service.api.inference_http import InferenceHTTP

        headers = {k.lower(): v for k, v in request.headers.items()}
        headers.pop("inference-header-content-length", None)
        headers.pop("content-encoding", None)
        reply = await InferenceHTTP(rt).v2_infer(
            model, version, msgspec.json.encode(data), headers, request.scope.get("state", {}).get("request_id", "-")
        )
        return _as_response(reply)
