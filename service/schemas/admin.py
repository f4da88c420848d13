"""Wire shapes of the admin API (msgspec Structs; they also drive the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from registry_db.records import AuditRecord, ModelRecord, TrafficRecord, VersionRecord

__all__ = (
    "AliasBody",
    "AliasOut",
    "AuditOut",
    "CreateModelBody",
    "ModelDetailOut",
    "ModelOut",
    "SplitItem",
    "StatsOut",
    "TrafficBody",
    "TrafficOut",
    "VersionOut",
)


class CreateModelBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    description: str = ""


class AliasBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``PUT /admin/models/{name}/aliases/{alias}``: point the alias at this version."""

    version: str


class SplitItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: str
    weight: int


class TrafficBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Weights are positive integers summing to 100."""

    splits: list[SplitItem]


class ModelOut(msgspec.Struct, frozen=True):
    name: str
    description: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, record: ModelRecord) -> ModelOut:
        return cls(record.name, record.description, record.created_at, record.updated_at)


class VersionOut(msgspec.Struct, frozen=True):
    model_name: str
    version: str
    number: int
    backend: str
    architecture: str | None
    architecture_config: dict[str, Any]
    sha256: str
    size_bytes: int
    status: str
    created_at: datetime
    created_by: str
    signature: dict[str, Any]
    preprocessing: dict[str, Any] | None
    postprocessing: dict[str, Any] | None
    card: dict[str, Any]

    @classmethod
    def of(cls, r: VersionRecord) -> VersionOut:
        return cls(
            r.model_name,
            r.version,
            r.number,
            r.backend,
            r.architecture,
            r.architecture_config,
            r.sha256,
            r.size_bytes,
            r.status,
            r.created_at,
            r.created_by,
            r.signature,
            r.preprocessing,
            r.postprocessing,
            r.card,
        )


class AliasOut(msgspec.Struct, frozen=True):
    model_name: str
    alias: str
    version: str


class TrafficOut(msgspec.Struct, frozen=True):
    model_name: str
    splits: list[SplitItem]

    @classmethod
    def of(cls, record: TrafficRecord | None, model: str) -> TrafficOut:
        if record is None:
            return cls(model, [])
        return cls(record.model_name, [SplitItem(e.version, e.weight) for e in record.splits])


class ModelDetailOut(msgspec.Struct, frozen=True):
    model: ModelOut
    versions: list[VersionOut]
    aliases: dict[str, str]
    traffic: list[SplitItem]


class StatsOut(msgspec.Struct, frozen=True):
    """Per-version figures on the replica that answered; ``comparison`` contrasts split arms."""

    model_name: str
    replica: str
    versions: dict[str, dict[str, Any]]
    traffic: list[SplitItem]
    comparison: dict[str, Any]


class AuditOut(msgspec.Struct, frozen=True):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]

    @classmethod
    def of(cls, r: AuditRecord) -> AuditOut:
        return cls(r.id, r.at, r.actor, r.action, r.target, r.details)
