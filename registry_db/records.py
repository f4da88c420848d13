"""Immutable records the repository returns: callers never hold ORM objects or sessions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

__all__ = (
    "AliasRecord",
    "ApiKeyRecord",
    "AuditRecord",
    "ModelRecord",
    "ModelRouting",
    "Principal",
    "RoutingSnapshot",
    "SplitEntry",
    "StoredArtifact",
    "TrafficRecord",
    "VersionRecord",
)


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """A model: the name clients call, grouping its versions."""

    name: str
    description: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """One registered version. ``signature`` = ``{"inputs": [spec...], "outputs": [spec...]}`` with
    spec = ``{"name", "datatype", "shape"}`` (batch dim first, -1 dynamic)."""

    model_name: str
    version: str
    number: int
    backend: str
    architecture: str | None
    architecture_config: dict[str, Any]
    sha256: str
    size_bytes: int
    storage_path: str
    signature: dict[str, Any]
    preprocessing: dict[str, Any] | None
    postprocessing: dict[str, Any] | None
    card: dict[str, Any]
    status: Literal["active", "archived"]
    created_at: datetime
    created_by: str
    model_created: bool = False
    """True only on the record of the registration that created its model (an upload to a new model name)."""


@dataclass(frozen=True, slots=True)
class AliasRecord:
    """A named pointer (``production``, ``staging``) at one active version of the same model."""

    model_name: str
    alias: str
    version: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SplitEntry:
    """One arm of a traffic split: ``weight`` percent of unversioned calls (weights of a split sum to 100)."""

    version: str
    weight: int


@dataclass(frozen=True, slots=True)
class TrafficRecord:
    """A model's weighted split, plus an optional shadow version mirroring ``shadow_percent`` % of calls."""

    model_name: str
    splits: tuple[SplitEntry, ...]
    shadow_version: str | None = None
    shadow_percent: int = 0


@dataclass(frozen=True, slots=True)
class ModelRouting:
    """How unversioned calls to one model are routed."""

    aliases: dict[str, str] = field(default_factory=dict)
    splits: tuple[SplitEntry, ...] = ()
    active_versions: tuple[str, ...] = ()
    shadow_version: str | None = None
    """A version that is sent a copy of ``shadow_percent`` % of the split's calls; its answers are never returned."""
    shadow_percent: int = 0


@dataclass(frozen=True, slots=True)
class RoutingSnapshot:
    """The whole routing state at one registry generation."""

    generation: int
    models: dict[str, ModelRouting]


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key's metadata; the key itself is never stored or returned after creation."""

    id: int
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an API key's name and scopes (``admin`` implies ``read``)."""

    name: str
    scopes: frozenset[str]

    def has(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited change: ``details`` holds ``before`` and ``after`` (and action-specific facts)."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredArtifact:
    """A durable blob in the content-addressed store."""

    sha256: str
    size_bytes: int
    path: Path
    storage_path: str
