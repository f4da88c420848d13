"""The one error hierarchy of modelport, rooted here because ``registry_db`` is the lowest layer.

Every error raised on purpose is a :class:`ModelportError` whose class says how a client should read it:
``status`` is the HTTP status (the gRPC edge maps the same classes to its own codes), ``message`` is safe
to show. ``service.errors`` adds the service's own kinds on top of these; nothing here imports a web
framework. A test walks every subclass and checks that it declares its status, so nothing new falls
through to 500 by accident.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = (
    "ArtifactTooLarge",
    "ArtifactUnreadable",
    "Conflict",
    "DatabaseUnavailable",
    "DuplicateArtifact",
    "DuplicateKey",
    "EmptyArtifact",
    "IntegrityError",
    "InvalidInput",
    "InvalidName",
    "ModelportError",
    "NotFound",
    "PayloadTooLarge",
    "RegistryError",
    "StoreError",
    "StoreMisconfigured",
    "StoreUnavailable",
    "Unavailable",
)


class ModelportError(Exception):
    """Base of every error raised on purpose; ``message`` is safe to show to clients and operators."""

    status: ClassVar[int] = 500
    """HTTP status of this kind of failure (4xx: the caller's mistake, 5xx: ours or a dependency's)."""
    retry_after_s: int | None = None
    """Seconds a client should wait before retrying (503s send it as ``Retry-After``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def public_fields(self) -> dict[str, Any]:
        """Fields a client may read beside ``error`` in the reply body (none unless a subclass names them)."""
        return {}


class InvalidInput(ModelportError):
    """The client sent something malformed or not matching the signature."""

    status = 400


class NotFound(ModelportError):
    """No such model, version, alias, key or blob."""

    status = 404


class Conflict(ModelportError):
    """The change conflicts with current state (archived target, routed version, concurrent writer)."""

    status = 409


class PayloadTooLarge(ModelportError):
    """A body or artifact over its configured limit."""

    status = 413


class Unavailable(ModelportError):
    """A dependency or resource is temporarily unavailable: retry later."""

    status = 503

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RegistryError(ModelportError):
    """A registry failure that none of the kinds below describes (a fault of ours)."""

    status = 500


class DuplicateKey(Conflict):
    """A unique name or label already exists."""

    status = 409


class DuplicateArtifact(Conflict):
    """The uploaded bytes are already a version of the same model: the reply names it (``existing_version``)."""

    status = 409
    existing_version: str = ""
    """The label of the version that already has these bytes (the oldest, archived or not)."""
    sha256: str = ""

    def __init__(self, message: str, *, existing_version: str, sha256: str) -> None:
        super().__init__(message)
        self.existing_version = existing_version
        self.sha256 = sha256

    def public_fields(self) -> dict[str, Any]:
        return {"existing_version": self.existing_version, "sha256": self.sha256}


class InvalidName(InvalidInput, ValueError):
    """A model name, version label, alias or weight breaks the registry's rules."""

    status = 400


class DatabaseUnavailable(Unavailable):
    """The registry database could not be reached."""

    status = 503


class StoreError(ModelportError):
    """The artifact store could not complete an operation (a fault of ours unless a subclass says otherwise)."""

    status = 500


class StoreMisconfigured(StoreError):
    """The store's settings are unusable (bad URL, missing optional dependency)."""

    status = 500


class EmptyArtifact(StoreError, InvalidInput):
    """An upload had no bytes at all."""

    status = 400


class ArtifactUnreadable(StoreError, InvalidInput):
    """The file given to the store (CLI registration) cannot be read."""

    status = 400


class ArtifactTooLarge(StoreError, PayloadTooLarge):
    """An artifact exceeded the size limit while streaming in."""

    status = 413


class StoreUnavailable(StoreError, Unavailable):
    """The object store holding the artifacts could not be reached or refused the operation (retry later)."""

    status = 503


class IntegrityError(StoreError):
    """A stored blob no longer matches its sha256 (tampering or corruption), or is missing.

    422 on registration (the upload cannot be trusted); the request path turns it into EngineUnavailable.
    """

    status = 422
