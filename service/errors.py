"""Domain errors of the service. No HTTP here: ``exception_handlers`` maps them to status codes."""

from __future__ import annotations

__all__ = (
    "BackendFailure",
    "EngineUnavailable",
    "InvalidInput",
    "ModelportError",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "Conflict",
    "Unauthorized",
    "Forbidden",
    "UnsupportedMediaType",
    "NotImplementedFeature",
    "ArtifactRejected",
    "RegistryUnavailable",
)


class ModelportError(Exception):
    """Base for every error the service raises on purpose; ``message`` is safe to show clients."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ModelportError):
    """The client sent something malformed or not matching the signature (400)."""


class NotFound(ModelportError):
    """Unknown model, version or alias (404)."""


class Conflict(ModelportError):
    """The request conflicts with current state, e.g. archiving a routed version (409)."""


class PayloadTooLarge(ModelportError):
    """Body or artifact over its configured limit (413)."""


class UnsupportedMediaType(ModelportError):
    """Content-Type or Content-Encoding outside the closed list we decode (415)."""


class ArtifactRejected(ModelportError):
    """An uploaded artifact cannot serve: wrong format, unsafe, fails to load or smoke-test (422)."""


class Unauthorized(ModelportError):
    """No or unknown credentials (401)."""


class Forbidden(ModelportError):
    """Valid credentials without the needed scope (403)."""


class NotImplementedFeature(ModelportError):
    """A protocol extension we do not implement (501)."""


class Overloaded(ModelportError):
    """Queue full or queue timeout: the client should retry later (503 + Retry-After)."""

    def __init__(self, message: str, retry_after_s: int = 1, *, reason: str = "queue_full") -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.reason = reason
        """``queue_full`` or ``queue_timeout`` (the metrics label)."""


class EngineUnavailable(ModelportError):
    """The version exists but its engine is not loaded or failed to load (503)."""

    def __init__(self, message: str, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RegistryUnavailable(ModelportError):
    """The registry database cannot be reached (503)."""


class BackendFailure(ModelportError):
    """The backend raised during inference: our fault, answered 500 without internals."""
