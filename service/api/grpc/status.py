"""Domain errors -> gRPC status codes, mirroring the HTTP statuses each error class declares.

The message is the one HTTP sends in ``{"error": ...}`` (``exception_handlers.public_error``: our own faults
without internals). A 503 (queue full, queue timeout, not ready, registry down) carries the seconds to wait in
the ``retry-after`` trailing metadata, as HTTP's ``Retry-After`` header.
"""

from __future__ import annotations

from service.api.grpc.codes import StatusCode
from service.exception_handlers import public_error, retry_after_s

__all__ = ("GrpcError", "grpc_error")

_CODES = {
    400: StatusCode.INVALID_ARGUMENT,
    401: StatusCode.UNAUTHENTICATED,
    403: StatusCode.PERMISSION_DENIED,
    404: StatusCode.NOT_FOUND,
    409: StatusCode.FAILED_PRECONDITION,
    413: StatusCode.RESOURCE_EXHAUSTED,
    415: StatusCode.INVALID_ARGUMENT,
    422: StatusCode.FAILED_PRECONDITION,
    501: StatusCode.UNIMPLEMENTED,
    503: StatusCode.UNAVAILABLE,
}
"""HTTP status -> gRPC code; any other status (500 and our own faults) is INTERNAL."""

GrpcError = tuple[StatusCode, str, tuple[tuple[str, str], ...]]


def grpc_error(exc: BaseException, request_id: str) -> GrpcError:
    """Code, message and trailing metadata for an exception raised while answering an RPC."""
    status, message = public_error(exc, request_id)
    code = _CODES.get(status, StatusCode.INTERNAL)
    trailing: tuple[tuple[str, str], ...] = (("x-request-id", request_id),)
    if status == 503:
        trailing += (("retry-after", str(retry_after_s(exc))),)
    return code, message, trailing
