"""Row lookups and record conversions the catalog and routing repositories share (inside a transaction).

Each lookup validates the name it is given before querying, so every repository refuses bad names the same
way, and raises :class:`NotFound` / :class:`Conflict` with the messages clients see.
"""

from __future__ import annotations

from sqlalchemy import select

from registry_db.errors import Conflict, NotFound
from registry_db.models import Model, ModelVersion
from registry_db.records import ModelRecord, VersionRecord
from registry_db.repository.unit_of_work import Transaction
from registry_db.validation import validate_model_name, validate_version_label

__all__ = ("active_version_row", "label_of", "model_record", "model_row", "version_record", "version_row")


def model_record(m: Model) -> ModelRecord:
    return ModelRecord(m.name, m.description, m.created_at, m.updated_at)


def version_record(v: ModelVersion, model_name: str) -> VersionRecord:
    return VersionRecord(
        model_name=model_name,
        version=v.version,
        number=v.number,
        backend=v.backend,
        architecture=v.architecture,
        architecture_config=dict(v.architecture_config or {}),
        sha256=v.sha256,
        size_bytes=v.size_bytes,
        storage_path=v.storage_path,
        signature=dict(v.signature or {}),
        preprocessing=v.preprocessing,
        postprocessing=v.postprocessing,
        card=dict(v.card or {}),
        status="archived" if v.status == "archived" else "active",
        created_at=v.created_at,
        created_by=v.created_by,
    )


async def model_row(tx: Transaction, name: str, *, lock: bool = False) -> Model:
    """The model row; ``lock`` serialises writers of one model (``FOR UPDATE`` on PostgreSQL; SQLite writers
    already hold the database write lock from ``BEGIN IMMEDIATE``)."""
    validate_model_name(name)
    query = select(Model).where(Model.name == name)
    if lock and tx.postgres:
        query = query.with_for_update()
    model = (await tx.session.execute(query)).scalar_one_or_none()
    if model is None:
        raise NotFound(f"unknown model '{name}'")
    return model


async def version_row(tx: Transaction, model: Model, version: str) -> ModelVersion:
    validate_version_label(version)
    query = select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.version == version)
    row = (await tx.session.execute(query)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"model '{model.name}' has no version '{version}'")
    return row


async def active_version_row(tx: Transaction, model: Model, version: str) -> ModelVersion:
    """The version row, refused with :class:`Conflict` when archived (aliases and splits need active ones)."""
    row = await version_row(tx, model, version)
    if row.status != "active":
        raise Conflict(f"version '{version}' of model '{model.name}' is archived")
    return row


async def label_of(tx: Transaction, version_id: int) -> str:
    query = select(ModelVersion.version).where(ModelVersion.id == version_id)
    return str((await tx.session.execute(query)).scalar_one())
