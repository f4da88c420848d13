"""The app factory: Litestar (routing, OpenAPI, admin) wrapped by the lean inference path. No logic here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

from litestar import Litestar, Router
from litestar.config.compression import CompressionConfig  # noqa: F401 - documented: never compress V2
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme, Tag

from service import __version__
from service.api.admin import ADMIN_CONTROLLERS
from service.api.feedback import FeedbackController
from service.api.grpc import GrpcServer
from service.api.inference_http import InferenceHTTP
from service.api.metrics import metrics
from service.api.shared_memory import SharedMemoryController
from service.api.v1_predict import V1Controller
from service.api.v2_extensions import V2ExtensionsController
from service.api.v2_inference import V2Controller
from service.asgi import ASGIApp, ModelportASGI
from service.exception_handlers import exception_handlers
from service.inference.admission import Admission
from service.observability.logging import configure_logging
from service.plugins import PluginRegistry
from service.runtime import Runtime
from service.security.exposure import check_exposure
from service.settings import Settings
from service.ui import ConsolePlugin, docs_render_plugins

__all__ = ("create_app", "create_app_from_env")

_DESCRIPTION = """modelport serves versioned PyTorch/ONNX models over the Open Inference Protocol (KServe V2,
binary tensor extension included) and a simple JSON predict API, with a registry, aliases, weighted sticky
A/B splits and an audit log. Admin routes need `Authorization: Bearer <key>`. Errors are `{"error": "..."}`."""


def _openapi() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="modelport",
        version=__version__,
        description=_DESCRIPTION,
        path="/schema",
        render_plugins=docs_render_plugins(),  # Swagger UI and ReDoc from the package, never a CDN
        components=Components(
            security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer", description="API key")}
        ),
        tags=[
            Tag(name="inference (V2)", description="Open Inference Protocol"),
            Tag(name="inference (simple)", description="JSON predict with postprocessing"),
        ],
    )


def _admin_router(settings: Settings) -> Router:
    """The admin routes and outcome feedback, whose JSON bodies are small: capped at ``MAX_MANIFEST_BYTES`` (the
    upload streams)."""
    return Router(
        path="/",
        route_handlers=[*ADMIN_CONTROLLERS, FeedbackController],
        request_max_body_size=settings.max_manifest_bytes,
    )


def create_app(settings: Settings | None = None, *, plugins: PluginRegistry | None = None) -> ModelportASGI:
    """Build the ASGI app for one worker. Nothing connects until the lifespan starts."""
    settings = settings or Settings()
    check_exposure(settings)
    configure_logging(settings.log_level, settings.log_format)
    runtime = Runtime.build(settings, plugins=plugins)
    inference = InferenceHTTP(
        runtime.dataplane,
        max_body_bytes=settings.max_body_bytes,
        queue_timeout_ms=settings.queue_timeout_ms,
        max_inflight_body_bytes=settings.max_inflight_body_bytes,
        admission=Admission(runtime.routing, runtime.pool),
        compression_min_bytes=settings.response_compression_min_bytes,
        shared_memory=runtime.shared_memory,
    )

    grpc_server = GrpcServer(runtime, inference.budget)  # MODELPORT_GRPC_PORT; each worker serves it beside HTTP

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        try:
            await grpc_server.start()
            yield
        finally:
            await grpc_server.stop(settings.drain_timeout_s)
            await runtime.stop()

    app = Litestar(
        route_handlers=[
            V2Controller,
            V2ExtensionsController,
            SharedMemoryController,
            V1Controller,
            _admin_router(settings),
            metrics,
        ],
        lifespan=[lifespan],
        plugins=[ConsolePlugin()],  # /ui and the packaged assets
        exception_handlers=exception_handlers,
        openapi_config=_openapi(),
        state=None,
        debug=False,
        logging_config=None,  # structlog is configured above; Litestar must not replace the handlers
        request_max_body_size=settings.max_body_bytes,
    )
    app.state.runtime = runtime
    app.state.inference = inference
    # Litestar types __call__ with its own scope/event TypedDicts; to the wrapper it is a plain ASGI app
    return ModelportASGI(cast(ASGIApp, app), runtime, inference)


def create_app_from_env() -> ModelportASGI:
    """Factory for ASGI servers started by import string (``--factory``), one call per worker process."""
    return create_app(Settings())
