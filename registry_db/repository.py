"""The registry repository: the only place SQL lives. Each public method is one transaction.

Rules enforced here whatever the caller: valid names; gap-free unique version numbers under concurrent
registration (a counter on the model row, locked with ``FOR UPDATE`` on PostgreSQL and by ``BEGIN
IMMEDIATE`` on SQLite, plus unique constraints and a bounded retry); aliases and splits only to active
versions of the same model; weights positive and summing to 100; no archiving a routed version; API keys
stored as hashes; an audit row and a generation bump in the same transaction as every change.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy.exc as sa_exc
from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from registry_db.base import utcnow
from registry_db.errors import Conflict, DatabaseUnavailable, DuplicateKey, InvalidName, NotFound
from registry_db.models import Alias, ApiKey, AuditEntry, Model, ModelVersion, RegistryState, TrafficSplit
from registry_db.records import (
    AliasRecord,
    ApiKeyRecord,
    AuditRecord,
    ModelRecord,
    ModelRouting,
    Principal,
    RoutingSnapshot,
    SplitEntry,
    TrafficRecord,
    VersionRecord,
)
from registry_db.validation import (
    validate_alias,
    validate_model_name,
    validate_splits,
    validate_version_label,
)

__all__ = ("Registry", "SCOPES", "NOTIFY_CHANNEL")

SCOPES = frozenset({"admin", "read"})
NOTIFY_CHANNEL = "modelport_registry"
_RETRIES = 8
_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, OSError, ConnectionError)


def _hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _model_record(m: Model) -> ModelRecord:
    return ModelRecord(m.name, m.description, m.created_at, m.updated_at)


def _version_record(v: ModelVersion, model_name: str) -> VersionRecord:
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


class _Retry(Exception):
    """A unique-constraint race lost to a concurrent writer: roll back and try again."""


class Registry:
    """Typed, transactional access to the registry database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._postgres = engine.dialect.name == "postgresql"

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self._sessions() as session, session.begin():
                yield session
        except sa_exc.IntegrityError as exc:
            raise _Retry(str(exc.orig)) from exc
        except sa_exc.OperationalError as exc:
            if "locked" in str(exc.orig).lower():
                raise _Retry(str(exc.orig)) from exc
            raise DatabaseUnavailable(f"registry database unavailable: {type(exc.orig).__name__}") from exc
        except _UNAVAILABLE as exc:
            raise DatabaseUnavailable(f"registry database unavailable: {type(exc).__name__}") from exc

    async def _run(self, op: Any, conflict_message: str) -> Any:
        """Run ``op(session)`` in a transaction, retrying lost unique-constraint races a bounded number of times."""
        for _ in range(_RETRIES):
            try:
                async with self._tx() as session:
                    return await op(session)
            except _Retry:
                continue
        raise Conflict(conflict_message)

    # -- helpers ------------------------------------------------------------------------------------
    async def _model(self, s: AsyncSession, name: str, *, lock: bool = False) -> Model:
        validate_model_name(name)
        query = select(Model).where(Model.name == name)
        if lock and self._postgres:
            query = query.with_for_update()
        model = (await s.execute(query)).scalar_one_or_none()
        if model is None:
            raise NotFound(f"unknown model '{name}'")
        return model

    async def _version(self, s: AsyncSession, model: Model, version: str) -> ModelVersion:
        validate_version_label(version)
        row = (
            await s.execute(
                select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.version == version)
            )
        ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"model '{model.name}' has no version '{version}'")
        return row

    async def _active_version(self, s: AsyncSession, model: Model, version: str) -> ModelVersion:
        row = await self._version(s, model, version)
        if row.status != "active":
            raise Conflict(f"version '{version}' of model '{model.name}' is archived")
        return row

    async def _audit(self, s: AsyncSession, actor: str, action: str, target: str, **details: Any) -> None:
        s.add(AuditEntry(at=utcnow(), actor=actor, action=action, target=target, details=details))

    async def _bump(self, s: AsyncSession) -> int:
        generation = (
            await s.execute(
                update(RegistryState)
                .where(RegistryState.id == 1)
                .values(generation=RegistryState.generation + 1)
                .returning(RegistryState.generation)
            )
        ).scalar_one()
        if self._postgres:
            await s.execute(
                text("SELECT pg_notify(:channel, :payload)"), {"channel": NOTIFY_CHANNEL, "payload": str(generation)}
            )
        return int(generation)

    # -- models -------------------------------------------------------------------------------------
    async def create_model(self, name: str, *, description: str = "", actor: str) -> ModelRecord:
        validate_model_name(name)

        async def op(s: AsyncSession) -> ModelRecord:
            if (await s.execute(select(Model.id).where(Model.name == name))).first():
                raise DuplicateKey(f"model '{name}' already exists")
            model = Model(name=name, description=description, created_at=utcnow(), updated_at=utcnow())
            s.add(model)
            await s.flush()
            await self._audit(s, actor, "model.create", name, description=description)
            await self._bump(s)
            return _model_record(model)

        try:
            return await self._run(op, f"model '{name}' could not be created")  # type: ignore[no-any-return]
        except Conflict:
            raise DuplicateKey(f"model '{name}' already exists") from None

    async def get_model(self, name: str) -> ModelRecord:
        async with self._tx() as s:
            return _model_record(await self._model(s, name))

    async def list_models(self) -> list[ModelRecord]:
        async with self._tx() as s:
            rows = (await s.execute(select(Model).order_by(Model.name))).scalars().all()
            return [_model_record(m) for m in rows]

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
    ) -> VersionRecord:
        """Commit a version whose blob is already durable in the store."""
        validate_model_name(model_name)
        if version is not None:
            validate_version_label(version)

        async def op(s: AsyncSession) -> VersionRecord:
            try:
                model = await self._model(s, model_name, lock=True)
            except NotFound:
                if not create_model:
                    raise
                model = Model(name=model_name, description="", created_at=utcnow(), updated_at=utcnow())
                s.add(model)
                await s.flush()
                await self._audit(s, actor, "model.create", model_name)
            taken = set(
                (await s.execute(select(ModelVersion.version).where(ModelVersion.model_id == model.id))).scalars().all()
            )
            if version is not None and version in taken:
                raise DuplicateKey(f"model '{model_name}' already has a version '{version}'")
            number = model.next_number
            label = version
            if label is None:
                while str(number) in taken:  # a user once chose a numeric label: skip past it
                    number += 1
                label = str(number)
            model.next_number = number + 1
            model.updated_at = utcnow()
            row = ModelVersion(
                model_id=model.id,
                version=label,
                number=number,
                backend=backend,
                architecture=architecture,
                architecture_config=architecture_config,
                sha256=sha256,
                size_bytes=size_bytes,
                storage_path=storage_path,
                signature=signature,
                preprocessing=preprocessing,
                postprocessing=postprocessing,
                card=card,
                status="active",
                created_at=utcnow(),
                created_by=actor,
            )
            s.add(row)
            await s.flush()
            await self._audit(
                s,
                actor,
                "version.register",
                f"{model_name}:{label}",
                sha256=sha256,
                size_bytes=size_bytes,
                backend=backend,
                number=number,
            )
            await self._bump(s)
            return _version_record(row, model_name)

        return await self._run(op, f"could not register a version of '{model_name}': too many concurrent writers")  # type: ignore[no-any-return]

    async def get_version(self, model: str, version: str) -> VersionRecord:
        async with self._tx() as s:
            m = await self._model(s, model)
            return _version_record(await self._version(s, m, version), m.name)

    async def list_versions(self, model: str) -> list[VersionRecord]:
        async with self._tx() as s:
            m = await self._model(s, model)
            rows = (
                (
                    await s.execute(
                        select(ModelVersion).where(ModelVersion.model_id == m.id).order_by(ModelVersion.number)
                    )
                )
                .scalars()
                .all()
            )
            return [_version_record(v, m.name) for v in rows]

    async def all_versions(self) -> list[VersionRecord]:
        async with self._tx() as s:
            rows = (
                await s.execute(select(ModelVersion, Model.name).join(Model).order_by(Model.name, ModelVersion.number))
            ).all()
            return [_version_record(v, name) for v, name in rows]

    async def referenced_sha256s(self) -> set[str]:
        async with self._tx() as s:
            return set((await s.execute(select(ModelVersion.sha256).distinct())).scalars().all())

    async def archive_version(self, model: str, version: str, *, actor: str) -> VersionRecord:
        async def op(s: AsyncSession) -> VersionRecord:
            m = await self._model(s, model, lock=True)
            row = await self._version(s, m, version)
            if row.status == "archived":
                return _version_record(row, m.name)
            aliases = (await s.execute(select(Alias.name).where(Alias.version_id == row.id))).scalars().all()
            if aliases:
                raise Conflict(f"version '{version}' is used by alias(es) {sorted(aliases)}: move them first")
            in_split = (
                await s.execute(
                    select(TrafficSplit.id).where(
                        or_(TrafficSplit.version_id == row.id, TrafficSplit.shadow_version_id == row.id)
                    )
                )
            ).first()
            if in_split:
                raise Conflict(f"version '{version}' is in the traffic split of '{model}': change the split first")
            row.status = "archived"
            await self._audit(s, actor, "version.archive", f"{model}:{version}", before="active", after="archived")
            await self._bump(s)
            return _version_record(row, m.name)

        return await self._run(op, f"could not archive '{model}:{version}'")  # type: ignore[no-any-return]

    # -- aliases ------------------------------------------------------------------------------------
    async def set_alias(self, model: str, alias: str, version: str, *, actor: str) -> AliasRecord:
        validate_alias(alias)

        async def op(s: AsyncSession) -> AliasRecord:
            m = await self._model(s, model, lock=True)
            row = await self._active_version(s, m, version)
            current = (
                await s.execute(select(Alias).where(Alias.model_id == m.id, Alias.name == alias))
            ).scalar_one_or_none()
            before = None
            if current is None:
                current = Alias(model_id=m.id, name=alias, version_id=row.id, updated_at=utcnow())
                s.add(current)
            else:
                before = (
                    await s.execute(select(ModelVersion.version).where(ModelVersion.id == current.version_id))
                ).scalar_one()
                current.version_id = row.id
                current.updated_at = utcnow()
            await s.flush()
            await self._audit(s, actor, "alias.set", f"{model}/{alias}", before=before, after=version)
            await self._bump(s)
            return AliasRecord(model, alias, version, current.updated_at)

        return await self._run(op, f"could not set alias '{alias}' of '{model}'")  # type: ignore[no-any-return]

    async def delete_alias(self, model: str, alias: str, *, actor: str) -> None:
        validate_alias(alias)

        async def op(s: AsyncSession) -> None:
            m = await self._model(s, model, lock=True)
            current = (
                await s.execute(select(Alias).where(Alias.model_id == m.id, Alias.name == alias))
            ).scalar_one_or_none()
            if current is None:
                raise NotFound(f"model '{model}' has no alias '{alias}'")
            before = (
                await s.execute(select(ModelVersion.version).where(ModelVersion.id == current.version_id))
            ).scalar_one()
            await s.delete(current)
            await self._audit(s, actor, "alias.delete", f"{model}/{alias}", before=before, after=None)
            await self._bump(s)

        await self._run(op, f"could not delete alias '{alias}' of '{model}'")

    async def list_aliases(self, model: str) -> list[AliasRecord]:
        async with self._tx() as s:
            m = await self._model(s, model)
            rows = (
                await s.execute(
                    select(Alias, ModelVersion.version)
                    .join(ModelVersion, Alias.version_id == ModelVersion.id)
                    .where(Alias.model_id == m.id)
                    .order_by(Alias.name)
                )
            ).all()
            return [AliasRecord(model, a.name, v, a.updated_at) for a, v in rows]

    # -- traffic ------------------------------------------------------------------------------------
    async def _splits(self, s: AsyncSession, model: Model) -> tuple[SplitEntry, ...]:
        rows = (
            await s.execute(
                select(ModelVersion.version, TrafficSplit.weight)
                .join(ModelVersion, TrafficSplit.version_id == ModelVersion.id)
                .where(TrafficSplit.model_id == model.id)
                .order_by(ModelVersion.number)
            )
        ).all()
        return tuple(SplitEntry(v, w) for v, w in rows)

    async def set_traffic(self, model: str, splits: Sequence[tuple[str, int]], *, actor: str) -> TrafficRecord:
        splits = [(str(v), w) for v, w in splits]
        validate_splits(splits)

        async def op(s: AsyncSession) -> TrafficRecord:
            m = await self._model(s, model, lock=True)
            rows = [(await self._active_version(s, m, v), w) for v, w in splits]
            before = [[e.version, e.weight] for e in await self._splits(s, m)]
            await s.execute(delete(TrafficSplit).where(TrafficSplit.model_id == m.id))
            for row, weight in rows:
                s.add(TrafficSplit(model_id=m.id, version_id=row.id, weight=weight, shadow_percent=0))
            await s.flush()
            await self._audit(s, actor, "traffic.set", model, before=before, after=[list(x) for x in splits])
            await self._bump(s)
            return TrafficRecord(model, tuple(SplitEntry(v, w) for v, w in splits))

        return await self._run(op, f"could not set the traffic split of '{model}'")  # type: ignore[no-any-return]

    async def clear_traffic(self, model: str, *, actor: str) -> None:
        async def op(s: AsyncSession) -> None:
            m = await self._model(s, model, lock=True)
            before = [[e.version, e.weight] for e in await self._splits(s, m)]
            if not before:
                return
            await s.execute(delete(TrafficSplit).where(TrafficSplit.model_id == m.id))
            await self._audit(s, actor, "traffic.clear", model, before=before, after=[])
            await self._bump(s)

        await self._run(op, f"could not clear the traffic split of '{model}'")

    async def get_traffic(self, model: str) -> TrafficRecord | None:
        async with self._tx() as s:
            m = await self._model(s, model)
            splits = await self._splits(s, m)
            return TrafficRecord(model, splits) if splits else None

    # -- routing ------------------------------------------------------------------------------------
    async def generation(self) -> int:
        async with self._tx() as s:
            value = (await s.execute(select(RegistryState.generation).where(RegistryState.id == 1))).scalar_one()
            return int(value)

    async def routing_snapshot(self) -> RoutingSnapshot:
        """Every model's aliases, split and active versions, consistent at one generation."""
        async with self._tx() as s:
            generation = (await s.execute(select(RegistryState.generation).where(RegistryState.id == 1))).scalar_one()
            names = dict((await s.execute(select(Model.id, Model.name))).all())
            active: dict[int, list[str]] = {mid: [] for mid in names}
            for mid, version in (
                await s.execute(
                    select(ModelVersion.model_id, ModelVersion.version)
                    .where(ModelVersion.status == "active")
                    .order_by(ModelVersion.number)
                )
            ).all():
                active[mid].append(version)
            aliases: dict[int, dict[str, str]] = {mid: {} for mid in names}
            for mid, alias, version in (
                await s.execute(
                    select(Alias.model_id, Alias.name, ModelVersion.version).join(
                        ModelVersion, Alias.version_id == ModelVersion.id
                    )
                )
            ).all():
                aliases[mid][alias] = version
            splits: dict[int, list[SplitEntry]] = {mid: [] for mid in names}
            for mid, version, weight in (
                await s.execute(
                    select(TrafficSplit.model_id, ModelVersion.version, TrafficSplit.weight)
                    .join(ModelVersion, TrafficSplit.version_id == ModelVersion.id)
                    .order_by(ModelVersion.number)
                )
            ).all():
                splits[mid].append(SplitEntry(version, weight))
            models = {
                name: ModelRouting(aliases=aliases[mid], splits=tuple(splits[mid]), active_versions=tuple(active[mid]))
                for mid, name in names.items()
            }
            return RoutingSnapshot(generation=int(generation), models=models)

    async def ping(self) -> None:
        async with self._tx() as s:
            await s.execute(select(func.count()).select_from(RegistryState))

    # -- API keys -----------------------------------------------------------------------------------
    async def create_api_key(self, name: str, scopes: Sequence[str], *, actor: str) -> tuple[str, ApiKeyRecord]:
        """A new random key; only its sha256 is stored. Returns the key (shown once) and its record."""
        validate_alias(name)
        scope_set = tuple(sorted(set(scopes)))
        if not scope_set or not set(scope_set) <= SCOPES:
            raise InvalidName(f"scopes must be a non-empty subset of {sorted(SCOPES)}, got {list(scopes)}")
        token = "mp_" + secrets.token_urlsafe(32)

        async def op(s: AsyncSession) -> ApiKeyRecord:
            if (await s.execute(select(ApiKey.id).where(ApiKey.name == name))).first():
                raise DuplicateKey(f"an API key named '{name}' already exists")
            row = ApiKey(name=name, key_hash=_hash_key(token), scopes=list(scope_set), created_at=utcnow())
            s.add(row)
            await s.flush()
            await self._audit(s, actor, "key.create", f"key:{name}", scopes=list(scope_set))
            return ApiKeyRecord(row.id, name, scope_set, row.created_at, None)

        try:
            record = await self._run(op, f"could not create key '{name}'")
        except Conflict:
            raise DuplicateKey(f"an API key named '{name}' already exists") from None
        return token, record

    async def authenticate(self, token: str) -> Principal | None:
        """The key's principal if the key exists and is not revoked (hash compared in constant time)."""
        if not token.startswith("mp_") or len(token) > 200:
            return None
        digest = _hash_key(token)
        async with self._tx() as s:
            row = (await s.execute(select(ApiKey).where(ApiKey.key_hash == digest))).scalar_one_or_none()
        if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, digest):
            return None
        return Principal(name=f"key:{row.name}", scopes=frozenset(row.scopes))

    async def revoke_api_key(self, name: str, *, actor: str) -> None:
        async def op(s: AsyncSession) -> None:
            row = (await s.execute(select(ApiKey).where(ApiKey.name == name))).scalar_one_or_none()
            if row is None:
                raise NotFound(f"no API key named '{name}'")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                await self._audit(s, actor, "key.revoke", f"key:{name}")

        await self._run(op, f"could not revoke key '{name}'")

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        async with self._tx() as s:
            rows = (await s.execute(select(ApiKey).order_by(ApiKey.name))).scalars().all()
            return [ApiKeyRecord(r.id, r.name, tuple(r.scopes), r.created_at, r.revoked_at) for r in rows]

    # -- audit --------------------------------------------------------------------------------------
    async def list_audit(self, *, limit: int = 100, model: str | None = None) -> list[AuditRecord]:
        async with self._tx() as s:
            query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(max(1, min(limit, 10_000)))
            if model is not None:
                query = query.where(
                    or_(
                        AuditEntry.target == model,
                        AuditEntry.target.startswith(f"{model}:"),
                        AuditEntry.target.startswith(f"{model}/"),
                    )
                )
            rows = (await s.execute(query)).scalars().all()
            return [AuditRecord(r.id, r.at, r.actor, r.action, r.target, dict(r.details or {})) for r in rows]
