"""Registry and store errors: raised by the repository and the artifact store, free of HTTP."""

from __future__ import annotations

__all__ = (
    "ArtifactTooLarge",
    "Conflict",
    "DuplicateKey",
    "IntegrityError",
    "InvalidName",
    "NotFound",
    "RegistryError",
    "StoreError",
    "StoreUnavailable",
    "DatabaseUnavailable",
)


class RegistryError(Exception):
    """Base of registry errors; the message is safe to show to clients and operators."""


class NotFound(RegistryError):
    """No such model, version, alias, key or blob."""


class DuplicateKey(RegistryError):
    """A unique name or label already exists."""


class Conflict(RegistryError):
    """The change conflicts with current state (archived target, routed version, concurrent writer)."""


class InvalidName(RegistryError, ValueError):
    """A model name, version label, alias or weight breaks the registry's rules."""


class StoreError(RegistryError):
    """The artifact store could not complete an operation."""


class ArtifactTooLarge(StoreError):
    """An artifact exceeded the size limit while streaming in."""


class StoreUnavailable(StoreError):
    """The object store holding the artifacts could not be reached or refused the operation (retry later)."""


class IntegrityError(StoreError):
    """A stored blob no longer matches its sha256 (tampering or corruption), or is missing."""


class DatabaseUnavailable(RegistryError):
    """The registry database could not be reached."""
