"""The catalog: models and their versions (registration, lookup, archiving).

Version numbers are gap-free and unique under concurrent registration: a counter on the model row, locked
with ``SELECT ... FOR UPDATE`` on PostgreSQL and by ``BEGIN IMMEDIATE`` on SQLite, backed by unique
constraints and the unit of work's bounded retry (a lost race never leaves a gap, because the counter only
moves on commit). Purely numeric labels are reserved for that numbering, so label ``"7"`` is always number 7.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import or_, select

from registry_db.base import utcnow
from registry_db.errors import Conflict, DuplicateArtifact, DuplicateKey, InvalidName, NotFound
from registry_db.models import Alias, Model, ModelVersion, TrafficSplit
from registry_db.records import ModelRecord, VersionRecord
from registry_db.repository._rows import model_record, model_row, version_record, version_row
from registry_db.repository.unit_of_work import Transaction, UnitOfWork
from registry_db.validation import (
    storage_path_for,
    validate_model_name,
    validate_plugin_name,
    validate_sha256,
    validate_version_label,
)

__all__ = ("CatalogRepository",)


def _check_version_fields(
    *,
    backend: str,
    architecture: str | None,
    sha256: str,
    size_bytes: int,
    storage_path: str,
    json_fields: dict[str, Any],
) -> None:
    validate_plugin_name("backend", backend)
    if architecture is not None:
        validate_plugin_name("architecture", architecture)
    validate_sha256(sha256)
    if isinstance(size_bytes, bool) or not isinstance(size_bytes, int) or size_bytes < 0:
        raise InvalidName(f"size_bytes must be a non-negative integer, got {size_bytes!r}")
    if storage_path != storage_path_for(sha256):
        raise InvalidName(f"storage_path must be the blob's store path {storage_path_for(sha256)!r}")
    for name, value in json_fields.items():
        if value is not None and not isinstance(value, dict):
            raise InvalidName(f"{name} must be a JSON object")


async def _new_model(tx: Transaction, name: str, description: str) -> Model:
    now = utcnow()
    model = Model(name=name, description=description, created_at=now, updated_at=now, next_number=1)
    tx.session.add(model)
    await tx.session.flush()  # a concurrent creator makes this a unique race: retried by the unit of work
    tx.record("model.create", name, None, {"description": description}, routing=True)
    return model


async def _refuse_same_bytes(tx: Transaction, model: Model, model_name: str, sha256: str) -> None:
    query = (
        select(ModelVersion.version, ModelVersion.status)
        .where(ModelVersion.model_id == model.id, ModelVersion.sha256 == sha256)
        .order_by(ModelVersion.number)
        .limit(1)
    )
    same = (await tx.session.execute(query)).first()
    if same is not None:
        version, status = same
        raise DuplicateArtifact(
            f"model '{model_name}' already has these bytes as version '{version}' ({status}, sha256 {sha256[:12]}...): "
            f"point an alias at version '{version}', or register them again with allow_duplicate=true "
            "(CLI: --allow-duplicate)",
            existing_version=version,
            sha256=sha256,
        )


class CatalogRepository:
    """Models and versions; returns immutable records, never ORM rows."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    # -- models -------------------------------------------------------------------------------------
    async def create_model(self, name: str, *, description: str = "", actor: str) -> ModelRecord:
        validate_model_name(name)

        async def op(tx: Transaction) -> ModelRecord:
            if (await tx.session.execute(select(Model.id).where(Model.name == name))).first():
                raise DuplicateKey(f"model '{name}' already exists")
            return model_record(await _new_model(tx, name, description))

        conflict = f"model '{name}' could not be created: concurrent writers, try again"
        return await self._uow.write(op, actor=actor, conflict=conflict)

    async def get_model(self, name: str) -> ModelRecord:
        async def op(tx: Transaction) -> ModelRecord:
            return model_record(await model_row(tx, name))

        return await self._uow.read(op)

    async def list_models(self) -> list[ModelRecord]:
        async def op(tx: Transaction) -> list[ModelRecord]:
            return [model_record(m) for m in (await tx.session.execute(select(Model).order_by(Model.name))).scalars()]

        return await self._uow.read(op)

    # -- versions -----------------------------------------------------------------------------------
    async def add_version(
        self,
        model_name: str,
        *,
        version: str | None,
        backend: str,
        architecture: str | None,
        architecture_config: dict[str, Any],
        sha256: str,
        size_bytes: int,
        storage_path: str,
        signature: dict[str, Any],
        preprocessing: dict[str, Any] | None,
        postprocessing: dict[str, Any] | None,
        card: dict[str, Any],
        actor: str,
        create_model: bool = True,
        refuse_duplicate_bytes: bool = False,
    ) -> VersionRecord:
        """Commit a version whose blob is already durable in the store (call only after ``ArtifactStore.put_*``).

        ``version=None`` takes the next number as its label. A numeric label must equal the number the version
        gets; any other label must be new for the model (else :class:`DuplicateKey`). A model that does not exist
        is created (``create_model``), and the record says so (``model_created``). With
        ``refuse_duplicate_bytes`` a model that already has a version (archived included) with this ``sha256``
        refuses the new one with :class:`DuplicateArtifact` naming it; checked under the model's write lock, so
        two concurrent uploads of the same bytes commit one version.
        """
        validate_model_name(model_name)
        if version is not None:
            validate_version_label(version)
        _check_version_fields(
            backend=backend,
            architecture=architecture,
            sha256=sha256,
            size_bytes=size_bytes,
            storage_path=storage_path,
            json_fields={
                "architecture_config": architecture_config,
                "signature": signature,
                "preprocessing": preprocessing,
                "postprocessing": postprocessing,
                "card": card,
            },
        )

        async def op(tx: Transaction) -> VersionRecord:
            s = tx.session
            created = False
            try:
                model = await model_row(tx, model_name, lock=True)
            except NotFound:
                if not create_model:
                    raise
                model = await _new_model(tx, model_name, "")
                created = True
            if refuse_duplicate_bytes and not created:
                await _refuse_same_bytes(tx, model, model_name, sha256)
            number = model.next_number
            label = str(number) if version is None else version
            if version is not None and version.isdigit() and version != str(number):
                raise InvalidName(
                    f"version label '{version}' is numeric, and numeric labels are assigned in order (the next is "
                    f"'{number}'): omit the version, or use a label such as 'v{version}'"
                )
            taken = (
                await s.execute(
                    select(ModelVersion.id).where(ModelVersion.model_id == model.id, ModelVersion.version == label)
                )
            ).first()
            if taken:
                raise DuplicateKey(f"model '{model_name}' already has a version '{label}'")
            model.next_number = number + 1
            model.updated_at = utcnow()
            row = ModelVersion(
                model_id=model.id,
                version=label,
                number=number,
                backend=backend,
                architecture=architecture,
                architecture_config=dict(architecture_config or {}),
                sha256=sha256,
                size_bytes=size_bytes,
                storage_path=storage_path,
                signature=dict(signature or {}),
                preprocessing=preprocessing,
                postprocessing=postprocessing,
                card=dict(card or {}),
                status="active",
                created_at=utcnow(),
                created_by=actor,
            )
            s.add(row)
            await s.flush()
            after = {"version": label, "number": number, "sha256": sha256, "size_bytes": size_bytes, "backend": backend}
            tx.record("version.register", f"{model_name}:{label}", None, after, routing=True)
            return replace(version_record(row, model_name), model_created=created)

        conflict = f"could not register a version of '{model_name}': too many concurrent writers"
        return await self._uow.write(op, actor=actor, conflict=conflict)

    async def get_version(self, model: str, version: str) -> VersionRecord:
        async def op(tx: Transaction) -> VersionRecord:
            m = await model_row(tx, model)
            return version_record(await version_row(tx, m, version), m.name)

        return await self._uow.read(op)

    async def list_versions(self, model: str) -> list[VersionRecord]:
        """Every version of ``model`` (archived included), by number."""

        async def op(tx: Transaction) -> list[VersionRecord]:
            m = await model_row(tx, model)
            query = select(ModelVersion).where(ModelVersion.model_id == m.id).order_by(ModelVersion.number)
            return [version_record(v, m.name) for v in (await tx.session.execute(query)).scalars()]

        return await self._uow.read(op)

    async def all_versions(self) -> list[VersionRecord]:
        """Every version of every model (``modelport verify``)."""

        async def op(tx: Transaction) -> list[VersionRecord]:
            query = select(ModelVersion, Model.name).join(Model).order_by(Model.name, ModelVersion.number)
            return [version_record(v, name) for v, name in (await tx.session.execute(query)).all()]

        return await self._uow.read(op)

    async def referenced_sha256s(self) -> set[str]:
        """Digests some version row points at, archived ones included (``modelport gc`` keeps these)."""

        async def op(tx: Transaction) -> set[str]:
            return set((await tx.session.execute(select(ModelVersion.sha256).distinct())).scalars())

        return await self._uow.read(op)

    async def references_sha256(self, sha256: str) -> bool:
        """Whether any version row (archived ones included) points at this blob: a refused registration of the
        same bytes must leave it in the store."""

        async def op(tx: Transaction) -> bool:
            found = await tx.session.execute(select(ModelVersion.id).where(ModelVersion.sha256 == sha256).limit(1))
            return found.first() is not None

        return await self._uow.read(op)

    async def archive_version(self, model: str, version: str, *, actor: str) -> VersionRecord:
        """Retire a version from routing (its row and blob stay). Refused while an alias or split uses it."""

        async def op(tx: Transaction) -> VersionRecord:
            s = tx.session
            m = await model_row(tx, model, lock=True)
            row = await version_row(tx, m, version)
            if row.status == "archived":
                return version_record(row, m.name)
            aliases = sorted((await s.execute(select(Alias.name).where(Alias.version_id == row.id))).scalars())
            if aliases:
                names = ", ".join(f"'{a}'" for a in aliases)
                raise Conflict(f"version '{version}' of '{model}' is used by alias {names}: move the alias first")
            routed = or_(TrafficSplit.version_id == row.id, TrafficSplit.shadow_version_id == row.id)
            if (await s.execute(select(TrafficSplit.id).where(routed))).first():
                raise Conflict(f"version '{version}' is in the traffic split of '{model}': change the split first")
            row.status = "archived"
            tx.record("version.archive", f"{model}:{version}", "active", "archived", routing=True)
            return version_record(row, m.name)

        conflict = f"could not archive '{model}:{version}': concurrent writers, try again"
        return await self._uow.write(op, actor=actor, conflict=conflict)
