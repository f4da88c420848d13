"""The only place domain errors become HTTP status codes and ``{"error": ...}`` bodies.

Every route answers errors as ``{"error": "<message>"}`` (the V2 protocol's shape; tritonclient reads it).
Our own faults are 500 with the request id and no internals; the traceback goes to the log.
"""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException

from service.errors import ModelportError, status_of

__all__ = ("error_reply", "exception_handlers", "public_error", "retry_after_s")

_log = structlog.get_logger(__name__)

_encoder = msgspec.json.Encoder()


def public_error(exc: BaseException, request_id: str | None = None) -> tuple[int, str]:
    """The status of an exception and the message a client may see; our own faults are logged with their
    traceback and answered without internals. Every protocol edge (HTTP here, gRPC) words errors through this."""
    status = status_of(exc)
    if isinstance(exc, ModelportError) and status != 500:
        return status, exc.message
    _log.error("internal_error", request_id=request_id, error_type=type(exc).__name__, exc_info=exc)
    return status, f"internal server error (request id {request_id or 'unknown'})"


def retry_after_s(exc: BaseException) -> int:
    """Seconds a refused client should wait (503s)."""
    return getattr(exc, "retry_after_s", None) or 1


def error_reply(exc: BaseException, request_id: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    """Status, JSON body and extra headers for an exception raised while handling a request."""
    status, message = public_error(exc, request_id)
    headers: dict[str, str] = {}
    if status == 503:
        headers["Retry-After"] = str(retry_after_s(exc))
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="modelport"'
    fields = exc.public_fields() if isinstance(exc, ModelportError) and status != 500 else {}
    return status, _encoder.encode({"error": message, **fields}), headers


def _domain_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    status, body, headers = error_reply(exc, request.scope.get("state", {}).get("request_id"))
    return Response(content=body, status_code=status, headers=headers, media_type="application/json")


def _http_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    message = exc.detail or "request failed"
    extra = getattr(exc, "extra", None)
    if exc.status_code == 400 and extra:
        message = f"{message}: {msgspec.json.encode(extra).decode()}"
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    if exc.status_code == 405:
        message = f"method {request.method} not allowed on {request.url.path}"
    if exc.status_code >= 500:
        _log.error("internal_error", error_type=type(exc).__name__, exc_info=exc)
    headers = dict(exc.headers or {})
    return Response(
        content=_encoder.encode({"error": message}),
        status_code=exc.status_code,
        headers=headers,
        media_type="application/json",
    )


def _nesting_handler(request: Request[Any, Any, Any], _: RecursionError) -> Response[bytes]:
    """A JSON body nested past the decoder's depth limit (msgspec raises RecursionError while Litestar parses a
    body): the client's mistake, not a 500 with a traceback."""
    _log.info("body_nested_too_deeply", path=request.url.path)
    return Response(
        content=_encoder.encode({"error": "malformed JSON: nested too deeply"}),
        status_code=400,
        media_type="application/json",
    )


def _internal_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    return _domain_handler(request, exc)


exception_handlers: dict[type[Exception] | int, Any] = {
    ModelportError: _domain_handler,
    HTTPException: _http_handler,
    RecursionError: _nesting_handler,
    Exception: _internal_handler,
}
