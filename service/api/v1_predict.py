"""Simple JSON predict: ``{"inputs": [instance, ...]}`` -> predictions with confidence and timings.

A second codec over the same data-plane call as V2 infer. Production requests arrive through the lean ASGI
path (``service.asgi``); these handlers take the raw body and call the same edge function, and document the
routes in OpenAPI.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from service.api.deps import documented_body, provide_inference, serve_inference
from service.api.inference_http import InferenceHTTP
from service.api.responses import errors
from service.schemas.examples import PREDICT_EXAMPLE
from service.schemas.v1 import PredictRequest, PredictResponse

__all__ = ("V1Controller",)

_PREDICT_DEPENDENCIES = {
    "documented_body": Provide(documented_body(PredictRequest, PREDICT_EXAMPLE), sync_to_thread=False)
}


class V1Controller(Controller):
    path = "/v1/models"
    tags = ["inference (simple)"]
    dependencies = {"inference": Provide(provide_inference, sync_to_thread=False)}

    @post(
        "/{model_name:str}/predict",
        summary="Predict (routed by split / production alias)",
        status_code=200,
        responses=errors(400, 404, 413, 415, 500, 503),
        request_max_body_size=None,
        dependencies=_PREDICT_DEPENDENCIES,
    )
    async def predict(
        self, request: Request[Any, Any, Any], inference: NamedDependency[InferenceHTTP], model_name: FromPath[str]
    ) -> PredictResponse:
        return await serve_inference(inference, "v1_predict", request, model_name, None)  # type: ignore[return-value]

    @post(
        "/{model_name:str}/versions/{version:str}/predict",
        summary="Predict on one version",
        status_code=200,
        responses=errors(400, 404, 413, 415, 500, 503),
        request_max_body_size=None,
        dependencies=_PREDICT_DEPENDENCIES,
    )
    async def predict_version(
        self,
        request: Request[Any, Any, Any],
        inference: NamedDependency[InferenceHTTP],
        model_name: FromPath[str],
        version: FromPath[str],
    ) -> PredictResponse:
        return await serve_inference(inference, "v1_predict", request, model_name, version)  # type: ignore[return-value]
