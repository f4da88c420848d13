"""modelport's registry: SQL models, the repository (the only SQL) and the content-addressed artifact store.

Migrations run through :mod:`registry_db.migrate` (imported on demand: it pulls in Alembic).
"""

from __future__ import annotations

from registry_db.errors import (
    ArtifactTooLarge,
    Conflict,
    DatabaseUnavailable,
    DuplicateKey,
    IntegrityError,
    InvalidInput,
    InvalidName,
    ModelportError,
    NotFound,
    RegistryError,
    StoreError,
)
from registry_db.records import (
    AliasRecord,
    ApiKeyRecord,
    AuditRecord,
    ModelRecord,
    ModelRouting,
    Principal,
    RoutingSnapshot,
    SplitEntry,
    StoredArtifact,
    TrafficRecord,
    VersionRecord,
)
from registry_db.repository import NOTIFY_CHANNEL, Registry
from registry_db.session import create_engine
from registry_db.store import ArtifactStore
from registry_db.validation import SCOPES, validate_alias, validate_model_name, validate_version_label

__all__ = (
    "NOTIFY_CHANNEL",
    "SCOPES",
    "AliasRecord",
    "ApiKeyRecord",
    "ArtifactStore",
    "ArtifactTooLarge",
    "AuditRecord",
    "Conflict",
    "DatabaseUnavailable",
    "DuplicateKey",
    "IntegrityError",
    "InvalidInput",
    "InvalidName",
    "ModelportError",
    "ModelRecord",
    "ModelRouting",
    "NotFound",
    "Principal",
    "Registry",
    "RegistryError",
    "RoutingSnapshot",
    "SplitEntry",
    "StoreError",
    "StoredArtifact",
    "TrafficRecord",
    "VersionRecord",
    "create_engine",
    "validate_alias",
    "validate_model_name",
    "validate_version_label",
)
