"""OpenAPI response descriptions shared by controllers."""

from __future__ import annotations

from litestar.openapi.datastructures import ResponseSpec

from service.schemas.v2 import ErrorResponse

__all__ = ("errors",)

_DESCRIPTIONS = {
    400: "Malformed request, or inputs that do not match the version's signature",
    401: "Missing or invalid API key",
    403: "The API key lacks the required scope",
    404: "Unknown model, version or alias",
    409: "Conflicts with the current registry state",
    413: "Body or artifact over the configured limit",
    415: "Unsupported Content-Type or Content-Encoding",
    422: "The artifact cannot serve (format, safety, load or smoke test)",
    500: "Server fault (logged with the request id)",
    501: "Unimplemented protocol extension",
    503: "Overloaded, queue timeout, model not ready or registry unavailable (see Retry-After)",
}


def errors(*codes: int) -> dict[int, ResponseSpec]:
    """``responses=`` entries for the given status codes, all with the ``{"error": ...}`` body."""
    return {
        code: ResponseSpec(data_container=ErrorResponse, description=_DESCRIPTIONS[code], generate_examples=False)
        for code in codes
    }
