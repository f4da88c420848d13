"""Simple JSON predict: ``{"inputs": [instance, ...]}`` -> predictions with confidence and timings.

Answered by the lean path in ``service.asgi``; these handlers document the routes and serve them when
the Litestar app runs without that wrapper.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.di import Provide

from service.api.deps import provide_runtime
from service.api.responses import errors
from service.runtime import Runtime
from service.schemas.v1 import PredictRequest, PredictResponse

__all__ = ("V1Controller",)


class V1Controller(Controller):
    path = "/v1/models"
    tags = ["inference (simple)"]
    dependencies = {"rt": Provide(provide_runtime, sync_to_thread=False)}

    @post(
        "/{model_name:str}/predict",
        summary="Predict (routed by split / production alias)",
        status_code=200,
        responses=errors(400, 404, 413, 415, 500, 503),
    )
    async def predict(
        self, request: Request[Any, Any, Any], rt: Runtime, model_name: str, data: PredictRequest
    ) -> PredictResponse:
        return await self._predict(request, rt, model_name, None, data)  # type: ignore[return-value]

    @post(
        "/{model_name:str}/versions/{version:str}/predict",
        summary="Predict on one version",
        status_code=200,
        responses=errors(400, 404, 413, 415, 500, 503),
    )
    async def predict_version(
        self, request: Request[Any, Any, Any], rt: Runtime, model_name: str, version: str, data: PredictRequest
    ) -> PredictResponse:
        return await self._predict(request, rt, model_name, version, data)  # type: ignore[return-value]

    @staticmethod
    async def _predict(
        request: Request[Any, Any, Any], rt: Runtime, model: str, version: str | None, data: PredictRequest
    ) -> Response[bytes]:
        from service.api.inference_http import InferenceHTTP

        headers = {k.lower(): v for k, v in request.headers.items()}
        reply = await InferenceHTTP(rt).v1_predict(
            model, version, msgspec.json.encode(data), headers, request.scope.get("state", {}).get("request_id", "-")
        )
        return Response(
            content=reply.body, status_code=reply.status, headers=reply.headers, media_type=reply.media_type
        )
