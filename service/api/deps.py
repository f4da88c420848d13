"""Dependency providers: narrow views of the worker's runtime, the calling principal, and the glue that lets a
Litestar handler run an inference request through the one HTTP edge."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, cast

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.enums import RequestEncodingType
from litestar.handlers import BaseRouteHandler
from litestar.params import Body

from registry_db.records import Principal
from registry_db.repository import Registry
from service.api.http_body import Receive, inference_headers
from service.api.inference_http import InferenceHTTP
from service.context import Services
from service.experiments.wiring import Experiments
from service.inference.dataplane import DataPlane
from service.management.operations import RoutingOperations
from service.runtime import Runtime

__all__ = (
    "authorize",
    "documented_body",
    "provide_admin",
    "provide_dataplane",
    "provide_experiments",
    "provide_inference",
    "provide_operations",
    "provide_reader",
    "provide_registry",
    "provide_runtime",
    "provide_services",
    "routing_key_of",
    "serve_inference",
)


def provide_runtime(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


def provide_dataplane(state: State) -> DataPlane:
    return provide_runtime(state).dataplane


def provide_inference(state: State) -> InferenceHTTP:
    inference: InferenceHTTP = state.inference
    return inference


def provide_registry(state: State) -> Registry:
    return provide_runtime(state).services.registry


def provide_services(state: State) -> Services:
    return provide_runtime(state).services


def provide_operations(state: State) -> RoutingOperations:
    return provide_runtime(state).operations


def provide_experiments(state: State) -> Experiments:
    return provide_runtime(state).experiments


def _needed_scope(handler: BaseRouteHandler) -> str:
    """The handler's ``opt["scope"]`` if it names one; else ``admin`` for handlers that take the ``admin``
    principal, else ``read``."""
    scope = handler.opt.get("scope")
    if isinstance(scope, str):
        return scope
    return "admin" if "admin" in handler.parsed_fn_signature.parameters else "read"


async def authorize(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Guard of every admin route: checks the key and its scope before Litestar reads a byte of the body, so an
    unauthenticated upload is refused at its headers (401/403) instead of after buffering it."""
    runtime: Runtime = connection.app.state.runtime
    principal = await runtime.auth.require(connection.headers.get("authorization"), _needed_scope(handler))
    connection.state.principal = principal


async def _checked_principal(request: Request[Any, Any, Any], state: State, scope: str) -> Principal:
    principal: Principal | None = request.state.get("principal")  # set by the ``authorize`` guard
    if principal is None or not principal.has(scope):
        principal = await provide_runtime(state).auth.require(request.headers.get("authorization"), scope)
    return principal


async def provide_admin(request: Request[Any, Any, Any], state: State) -> Principal:
    """The caller, if it holds an ``admin`` key (401 without a key, 403 without the scope)."""
    return await _checked_principal(request, state, "admin")


async def provide_reader(request: Request[Any, Any, Any], state: State) -> Principal:
    """The caller, if it holds a ``read`` (or ``admin``) key."""
    return await _checked_principal(request, state, "read")


def routing_key_of(request: Request[Any, Any, Any]) -> str | None:
    return request.headers.get("x-routing-key")


def documented_body(schema: type, example: dict[str, Any]) -> Callable[..., None]:
    """A dependency that only declares ``data: schema`` (with ``example``) for OpenAPI: the handlers that carry it
    never ask for it, so Litestar never parses the body; the edge decodes the raw bytes itself."""

    def declare(data: Any) -> None:  # noqa: ARG001  # pragma: no cover - never resolved
        raise AssertionError("documentation-only dependency")

    # schema_extra lands on the component schema (as the admin bodies' examples do); ``examples=`` would also wrap
    # every operation's $ref in an allOf carrying a second copy
    body = Body(media_type=RequestEncodingType.JSON, schema_extra={"examples": [example]})
    declare.__annotations__ = {"data": Annotated[schema, body], "return": None}
    return declare


async def serve_inference(
    inference: InferenceHTTP,
    route: Literal["v2_infer", "v1_predict"],
    request: Request[Any, Any, Any],
    model: str,
    version: str | None,
) -> Response[bytes]:
    """Run a Litestar-routed inference request through the same edge function as the lean ASGI path."""
    request_id = request.scope.get("state", {}).get("request_id", "-")
    headers = inference_headers(request.scope["headers"])
    receive = cast(Receive, request.receive)  # Litestar types its events; the edge reads plain ASGI messages
    peer = request.client.host if request.client is not None else None
    reply = await inference.serve(route, model, version, receive, headers, request_id, peer)
    return Response(content=reply.body, status_code=reply.status, headers=reply.headers, media_type=reply.media_type)
