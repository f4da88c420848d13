"""Wire shapes of the admin API.

Request bodies are pydantic models with validators: they are rare, so rich checks and messages that name the
field matter more than decoding speed, and Litestar validates them and puts their schemas (with an example
each) in the OpenAPI document. The rules are the registry's own functions (``service.schemas.fields``,
``registry_db.validation``), so the API, the CLI and the repository refuse the same things. Responses stay
msgspec Structs, encoded without a validation pass.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from pydantic import AfterValidator, BaseModel, Field, StrictStr

from registry_db.records import AuditRecord, ModelRecord, TrafficRecord, VersionRecord
from registry_db.validation import SCOPES, validate_scopes, validate_splits
from service.schemas.fields import AliasName, ExactInt, ModelName, VersionLabel, body_config

__all__ = (
    "AliasBody",
    "AliasOut",
    "AuditOut",
    "CreateKeyBody",
    "CreateModelBody",
    "ModelDetailOut",
    "ModelOut",
    "SplitBody",
    "SplitItem",
    "ShadowBody",
    "ShadowOut",
    "TrafficBody",
    "TrafficOut",
    "RegisteredVersionOut",
    "VersionOut",
)

_MAX_SPLIT_ARMS = 16


class CreateModelBody(BaseModel):
    """``POST /admin/models``."""

    model_config = body_config({"name": "digits", "description": "Handwritten digits 0-9"})

    name: ModelName
    description: Annotated[StrictStr, Field(max_length=4096)] = ""


class AliasBody(BaseModel):
    """``PUT /admin/models/{name}/aliases/{alias}``: point the alias at this version."""

    model_config = body_config({"version": "2"})

    version: VersionLabel


class SplitBody(BaseModel):
    """One arm of a requested split: a version and its share of unversioned traffic, in percent."""

    model_config = body_config({"version": "1", "weight": 90})

    version: VersionLabel
    weight: Annotated[ExactInt, Field(ge=1, le=100, description="Percent of traffic; the weights sum to 100.")]


def _valid_split(splits: list[SplitBody]) -> list[SplitBody]:
    validate_splits([(s.version, s.weight) for s in splits])  # unique versions, sum 100: the registry's rule
    return splits


class ShadowBody(BaseModel):
    """A version sent a copy of ``percent`` % of the split's calls after the primary answered (never returned)."""

    model_config = body_config({"version": "2", "percent": 20})

    version: VersionLabel
    percent: Annotated[ExactInt, Field(ge=1, le=100)]


class TrafficBody(BaseModel):
    """``PUT /admin/models/{name}/traffic``: weights are positive integers summing to 100, each version once;
    optionally a shadow version outside the split."""

    model_config = body_config({"splits": [{"version": "1", "weight": 90}, {"version": "2", "weight": 10}]})

    splits: Annotated[list[SplitBody], Field(min_length=1, max_length=_MAX_SPLIT_ARMS), AfterValidator(_valid_split)]
    shadow: ShadowBody | None = None


def _valid_scopes(scopes: list[str]) -> list[str]:
    return list(validate_scopes(scopes))


class CreateKeyBody(BaseModel):
    """``POST /admin/keys``: a named key with a non-empty subset of the scopes ``admin`` and ``read``."""

    model_config = body_config({"name": "dashboard", "scopes": ["read"]})

    name: AliasName
    scopes: Annotated[
        list[StrictStr],
        Field(min_length=1, max_length=8, json_schema_extra={"items": {"type": "string", "enum": sorted(SCOPES)}}),
        AfterValidator(_valid_scopes),
    ] = Field(default_factory=lambda: ["read"])


class SplitItem(msgspec.Struct, frozen=True):
    """One arm of a split as answered (responses; requests use :class:`SplitBody`)."""

    version: str
    weight: int


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


class RegisteredVersionOut(VersionOut, frozen=True):
    """The reply to an upload: the version record, and whether the upload created its model."""

    model_created: bool = False
    """True when the model did not exist: an upload to a new name creates it (docs/api.md, "Registering")."""

    @classmethod
    def of(cls, r: VersionRecord) -> RegisteredVersionOut:
        base = VersionOut.of(r)
        return cls(**{name: getattr(base, name) for name in base.__struct_fields__}, model_created=r.model_created)


class AliasOut(msgspec.Struct, frozen=True):
    model_name: str
    alias: str
    version: str


class ShadowOut(msgspec.Struct, frozen=True):
    version: str
    percent: int


class TrafficOut(msgspec.Struct, frozen=True):
    model_name: str
    splits: list[SplitItem]
    shadow: ShadowOut | None = None

    @classmethod
    def of(cls, record: TrafficRecord | None, model: str) -> TrafficOut:
        if record is None:
            return cls(model, [])
        shadow = ShadowOut(record.shadow_version, record.shadow_percent) if record.shadow_version else None
        return cls(record.model_name, [SplitItem(e.version, e.weight) for e in record.splits], shadow)


class ModelDetailOut(msgspec.Struct, frozen=True):
    model: ModelOut
    versions: list[VersionOut]
    aliases: dict[str, str]
    traffic: list[SplitItem]


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
