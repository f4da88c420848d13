"""The service's errors: the one hierarchy of ``registry_db.errors`` plus the kinds only the service raises.

No HTTP here beyond each class's ``status`` number; ``exception_handlers`` turns errors into replies and the
gRPC edge maps the same classes to its codes. Generic kinds (NotFound, Conflict, InvalidInput, ...) are the
registry's classes re-exported, so there is exactly one class per kind.
"""

from __future__ import annotations

from registry_db.errors import (
    Conflict,
    InvalidInput,
    ModelportError,
    NotFound,
    PayloadTooLarge,
    Unavailable,
)

__all__ = (
    "ArtifactRejected",
    "BackendFailure",
    "Conflict",
    "EngineUnavailable",
    "Forbidden",
    "InvalidInput",
    "ModelportError",
    "NotFound",
    "NotImplementedFeature",
    "Overloaded",
    "PayloadTooLarge",
    "RegistryUnavailable",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "status_of",
)


def status_of(exc: BaseException) -> int:
    """The HTTP status an exception maps to: its class's, or 500 for anything not raised on purpose."""
    return exc.status if isinstance(exc, ModelportError) else 500


class UnsupportedMediaType(ModelportError):
    """Content-Type or Content-Encoding outside the closed list we decode."""

    status = 415


class ArtifactRejected(ModelportError):
    """An uploaded artifact cannot serve: wrong format, unsafe, fails to load or smoke-test."""

    status = 422


class Unauthorized(ModelportError):
    """No or unknown credentials."""

    status = 401


class Forbidden(ModelportError):
    """Valid credentials without the needed scope."""

    status = 403


class NotImplementedFeature(ModelportError):
    """A protocol extension we do not implement."""

    status = 501


class Overloaded(Unavailable):
    """Queue full or queue timeout: the client should retry later (503 + Retry-After)."""

    status = 503

    def __init__(self, message: str, retry_after_s: int = 1, *, reason: str = "queue_full") -> None:
        super().__init__(message, retry_after_s)
        self.reason = reason
        """``queue_full`` or ``queue_timeout`` (the metrics label)."""


class EngineUnavailable(Unavailable):
    """The version exists but its engine is not loaded, failed to load, or the server is draining."""

    status = 503

    def __init__(self, message: str, retry_after_s: int = 5) -> None:
        super().__init__(message, retry_after_s)


class RegistryUnavailable(Unavailable):
    """The registry database cannot be reached."""

    status = 503


class BackendFailure(ModelportError):
    """The backend raised during inference: our fault, answered 500 without internals."""

    status = 500
