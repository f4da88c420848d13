"""The registry repository: the only place SQL lives. Each public method is one transaction.

Rules enforced here whatever the caller:

- valid model names, version labels, aliases, plugin names, digests and actors;
- gap-free, unique version numbers under concurrent registration: a counter on the model row, locked with
  ``SELECT ... FOR UPDATE`` on PostgreSQL and by ``BEGIN IMMEDIATE`` on SQLite, backed by unique constraints
  and a bounded retry with rollback (a lost race never leaves a gap, because the counter only moves on
  commit); purely numeric labels are reserved for that numbering, so label ``"7"`` is always number 7;
- aliases and splits only point at active versions of the same model; weights are positive and sum to 100;
  a version an alias or split uses cannot be archived;
- API keys are stored as sha256 hashes only;
- every mutation writes an audit row (actor, action, target, before/after) in its own transaction, and every
  change that affects routing bumps ``registry_state.generation`` there too (plus ``NOTIFY`` on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from registry_db.base import utcnow
from registry_db.errors import Conflict, DuplicateKey, InvalidName, ModelportError, NotFound
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
from registry_db.session import READONLY, Transient, classify_db_error, create_engine
from registry_db.validation import (
    SCOPES,
    storage_path_for,
    validate_actor,
    validate_alias,
    validate_model_name,
    validate_plugin_name,
    validate_scopes,
    validate_sha256,
    validate_splits,
    validate_version_label,
)

__all__ = ("NOTIFY_CHANNEL", "SCOPES", "Registry", "hash_api_key")

NOTIFY_CHANNEL = "modelport_registry"
"""PostgreSQL channel notified with the new generation on every routing change (see ``registry_db.notify``)."""
KEY_PREFIX = "mp_"
_ATTEMPTS = 8
_MAX_TOKEN = 200
_T = TypeVar("_T")
_Op = Callable[[AsyncSession], Awaitable[_T]]


def hash_api_key(token: str) -> str:
    """The stored form of an API key: sha256 hex (keys are 256-bit random, so no salt or KDF is needed)."""
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


def _key_record(k: ApiKey) -> ApiKeyRecord:
    return ApiKeyRecord(k.id, k.name, tuple(k.scopes), k.created_at, k.revoked_at)


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(random.uniform(0, min(0.25, 0.004 * 2**attempt)))  # noqa: S311 - jitter, not crypto


def _check_version_fields(
    *,
    backend: str,
    architecture: str | None,
    sha256: str,
    size_bytes: int,
    storage_path: str,
    json_fields: dict[str, Any],
    actor: str,
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
    validate_actor(actor)


class Registry:
    """Typed, transactional access to the registry database; returns immutable records, never ORM rows.

    One instance per process; safe to share between tasks (each call takes its own pooled connection).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._postgres = engine.dialect.name == "postgresql"

    @classmethod
    def from_url(cls, url: str) -> Registry:
        """A registry on a new engine for ``url`` (the schema must already be migrated)."""
        return cls(create_engine(url))

    async def close(self) -> None:
        await self.engine.dispose()

    # -- transactions -------------------------------------------------------------------------------
    async def _execute(self, op: _Op[_T], *, write: bool, conflict: str = "", snapshot: bool = False) -> _T:
        """Run ``op(session)`` in one transaction; retry transient races; map driver errors to registry errors.

        Domain errors raised by ``op`` roll the transaction back and propagate unchanged. Only transient
        failures (a lost unique race, serialization failure, deadlock, SQLite lock) are retried, with jitter,
        at most ``_ATTEMPTS`` times; then :class:`Conflict` with ``conflict`` as the message.
        """
        options: dict[str, Any] = {}
        if not write:
            options[READONLY] = True
            if self._postgres:
                options["postgresql_readonly"] = True
        if snapshot and self._postgres:
            options["isolation_level"] = "REPEATABLE READ"
        last: BaseException | None = None
        for attempt in range(_ATTEMPTS):
            try:
                async with self._sessions() as session, session.begin():
                    await session.connection(execution_options=options)
                    return await op(session)
            except ModelportError:
                raise
            except Exception as exc:
                mapped = classify_db_error(exc)
                if mapped is None:
                    raise
                if not isinstance(mapped, Transient):
                    raise mapped from exc
                last = exc
                await _backoff(attempt)
        raise Conflict(conflict or "the registry is busy: too many concurrent writers, try again") from last

    async def _read(self, op: _Op[_T], *, snapshot: bool = False) -> _T:
        return await self._execute(op, write=False, snapshot=snapshot)

    async def _write(self, op: _Op[_T], conflict: str) -> _T:
        return await self._execute(op, write=True, conflict=conflict)

    # -- helpers (inside a transaction) -------------------------------------------------------------
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

    async def _label_of(self, s: AsyncSession, version_id: int) -> str:
        return str((await s.execute(select(ModelVersion.version).where(ModelVersion.id == version_id))).scalar_one())

    @staticmethod
    def _audit(s: AsyncSession, actor: str, action: str, target: str, before: Any, after: Any, **extra: Any) -> None:
        s.add(
            AuditEntry(
                at=utcnow(),
                actor=actor,
                action=action,
                target=target,
                details={"before": before, "after": after, **extra},
            )
        )

    async def _bump(self, s: AsyncSession) -> int:
        """Advance the routing generation in this transaction; PostgreSQL also notifies listeners on commit."""
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
        validate_actor(actor)

        async def op(s: AsyncSession) -> ModelRecord:
            if (await s.execute(select(Model.id).where(Model.name == name))).first():
                raise DuplicateKey(f"model '{name}' already exists")
            now = utcnow()
            model = Model(name=name, description=description, created_at=now, updated_at=now, next_number=1)
            s.add(model)
            await s.flush()
            self._audit(s, actor, "model.create", name, None, {"description": description})
            await self._bump(s)
            return _model_record(model)

        return await self._write(op, f"model '{name}' could not be created: concurrent writers, try again")

    async def get_model(self, name: str) -> ModelRecord:
        async def op(s: AsyncSession) -> ModelRecord:
            return _model_record(await self._model(s, name))

        return await self._read(op)

    async def list_models(self) -> list[ModelRecord]:
        async def op(s: AsyncSession) -> list[ModelRecord]:
            return [_model_record(m) for m in (await s.execute(select(Model).order_by(Model.name))).scalars()]

        return await self._read(op)

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
        """Commit a version whose blob is already durable in the store (call only after ``ArtifactStore.put_*``).

        ``version=None`` takes the next number as its label. A numeric label must equal the number the version
        gets; any other label must be new for the model (else :class:`DuplicateKey`).
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
            actor=actor,
        )

        async def op(s: AsyncSession) -> VersionRecord:
            try:
                model = await self._model(s, model_name, lock=True)
            except NotFound:
                if not create_model:
                    raise
                now = utcnow()
                model = Model(name=model_name, description="", created_at=now, updated_at=now, next_number=1)
                s.add(model)
                await s.flush()  # a concurrent creator makes this a unique race: retried, then found and locked
                self._audit(s, actor, "model.create", model_name, None, {"description": ""})
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
            self._audit(s, actor, "version.register", f"{model_name}:{label}", None, after)
            await self._bump(s)
            return _version_record(row, model_name)

        return await self._write(op, f"could not register a version of '{model_name}': too many concurrent writers")

    async def get_version(self, model: str, version: str) -> VersionRecord:
        async def op(s: AsyncSession) -> VersionRecord:
            m = await self._model(s, model)
            return _version_record(await self._version(s, m, version), m.name)

        return await self._read(op)

    async def list_versions(self, model: str) -> list[VersionRecord]:
        """Every version of ``model`` (archived included), by number."""

        async def op(s: AsyncSession) -> list[VersionRecord]:
            m = await self._model(s, model)
            query = select(ModelVersion).where(ModelVersion.model_id == m.id).order_by(ModelVersion.number)
            return [_version_record(v, m.name) for v in (await s.execute(query)).scalars()]

        return await self._read(op)

    async def all_versions(self) -> list[VersionRecord]:
        """Every version of every model (``modelport verify``)."""

        async def op(s: AsyncSession) -> list[VersionRecord]:
            query = select(ModelVersion, Model.name).join(Model).order_by(Model.name, ModelVersion.number)
            return [_version_record(v, name) for v, name in (await s.execute(query)).all()]

        return await self._read(op)

    async def referenced_sha256s(self) -> set[str]:
        """Digests some version row points at, archived ones included (``modelport gc`` keeps these)."""

        async def op(s: AsyncSession) -> set[str]:
            return set((await s.execute(select(ModelVersion.sha256).distinct())).scalars())

        return await self._read(op)

    async def archive_version(self, model: str, version: str, *, actor: str) -> VersionRecord:
        """Retire a version from routing (its row and blob stay). Refused while an alias or split uses it."""
        validate_actor(actor)

        async def op(s: AsyncSession) -> VersionRecord:
            m = await self._model(s, model, lock=True)
            row = await self._version(s, m, version)
            if row.status == "archived":
                return _version_record(row, m.name)
            aliases = sorted((await s.execute(select(Alias.name).where(Alias.version_id == row.id))).scalars())
            if aliases:
                names = ", ".join(f"'{a}'" for a in aliases)
                raise Conflict(f"version '{version}' of '{model}' is used by alias {names}: move the alias first")
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
            self._audit(s, actor, "version.archive", f"{model}:{version}", "active", "archived")
            await self._bump(s)
            return _version_record(row, m.name)

        return await self._write(op, f"could not archive '{model}:{version}': concurrent writers, try again")

    # -- aliases ------------------------------------------------------------------------------------
    async def set_alias(self, model: str, alias: str, version: str, *, actor: str) -> AliasRecord:
        """Point ``alias`` at an active ``version`` (create or move it): promotion and rollback."""
        validate_alias(alias)
        validate_version_label(version)
        validate_actor(actor)

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
                before = await self._label_of(s, current.version_id)
                current.version_id = row.id
                current.updated_at = utcnow()
            await s.flush()
            self._audit(s, actor, "alias.set", f"{model}/{alias}", before, version)
            await self._bump(s)
            return AliasRecord(model, alias, version, current.updated_at)

        return await self._write(op, f"could not set alias '{alias}' of '{model}': concurrent writers, try again")

    async def delete_alias(self, model: str, alias: str, *, actor: str) -> None:
        validate_alias(alias)
        validate_actor(actor)

        async def op(s: AsyncSession) -> None:
            m = await self._model(s, model, lock=True)
            current = (
                await s.execute(select(Alias).where(Alias.model_id == m.id, Alias.name == alias))
            ).scalar_one_or_none()
            if current is None:
                raise NotFound(f"model '{model}' has no alias '{alias}'")
            before = await self._label_of(s, current.version_id)
            await s.delete(current)
            self._audit(s, actor, "alias.delete", f"{model}/{alias}", before, None)
            await self._bump(s)

        await self._write(op, f"could not delete alias '{alias}' of '{model}': concurrent writers, try again")

    async def list_aliases(self, model: str) -> list[AliasRecord]:
        async def op(s: AsyncSession) -> list[AliasRecord]:
            m = await self._model(s, model)
            query = (
                select(Alias, ModelVersion.version)
                .join(ModelVersion, Alias.version_id == ModelVersion.id)
                .where(Alias.model_id == m.id)
                .order_by(Alias.name)
            )
            return [AliasRecord(model, a.name, v, a.updated_at) for a, v in (await s.execute(query)).all()]

        return await self._read(op)

    # -- traffic ------------------------------------------------------------------------------------
    async def _traffic(self, s: AsyncSession, model: Model) -> TrafficRecord | None:
        rows = (
            await s.execute(
                select(
                    ModelVersion.version,
                    TrafficSplit.weight,
                    TrafficSplit.shadow_version_id,
                    TrafficSplit.shadow_percent,
                )
                .join(ModelVersion, TrafficSplit.version_id == ModelVersion.id)
                .where(TrafficSplit.model_id == model.id)
                .order_by(ModelVersion.number)
            )
        ).all()
        if not rows:
            return None
        shadow_id, shadow_percent = rows[0][2], rows[0][3]
        shadow = await self._label_of(s, shadow_id) if shadow_id is not None else None
        splits = tuple(SplitEntry(v, w) for v, w, _, _ in rows)
        return TrafficRecord(model.name, splits, shadow, shadow_percent if shadow else 0)

    @staticmethod
    def _traffic_json(record: TrafficRecord | None) -> dict[str, Any] | None:
        if record is None:
            return None
        data: dict[str, Any] = {"splits": [[e.version, e.weight] for e in record.splits]}
        if record.shadow_version:
            data["shadow"] = [record.shadow_version, record.shadow_percent]
        return data

    async def set_traffic(
        self,
        model: str,
        splits: Sequence[tuple[str, int]],
        *,
        actor: str,
        shadow: tuple[str, int] | None = None,
    ) -> TrafficRecord:
        """Replace the weighted split of unversioned calls (versions active, weights positive, sum 100).

        ``shadow=(version, percent)`` also records a version that mirrors ``percent`` % of the traffic without
        answering; it must be active and outside the split.
        """
        pairs = [(str(v), w) for v, w in splits]
        validate_splits(pairs)
        validate_actor(actor)
        if shadow is not None:
            shadow_version, shadow_percent = str(shadow[0]), shadow[1]
            validate_version_label(shadow_version)
            if isinstance(shadow_percent, bool) or not isinstance(shadow_percent, int) or not 0 < shadow_percent <= 100:
                raise InvalidName(f"shadow percentage must be an integer in 1..100, got {shadow_percent!r}")
            if shadow_version in {v for v, _ in pairs}:
                raise InvalidName(f"shadow version '{shadow_version}' is already in the split")

        async def op(s: AsyncSession) -> TrafficRecord:
            m = await self._model(s, model, lock=True)
            rows = [(await self._active_version(s, m, v), w) for v, w in pairs]
            shadow_row = await self._active_version(s, m, shadow[0]) if shadow is not None else None
            before = self._traffic_json(await self._traffic(s, m))
            await s.execute(delete(TrafficSplit).where(TrafficSplit.model_id == m.id))
            for row, weight in rows:
                s.add(
                    TrafficSplit(
                        model_id=m.id,
                        version_id=row.id,
                        weight=weight,
                        shadow_version_id=shadow_row.id if shadow_row else None,
                        shadow_percent=shadow[1] if shadow is not None else 0,
                    )
                )
            await s.flush()
            record = TrafficRecord(
                model,
                tuple(SplitEntry(v, w) for v, w in pairs),
                shadow_row.version if shadow_row else None,
                shadow[1] if shadow is not None else 0,
            )
            self._audit(s, actor, "traffic.set", model, before, self._traffic_json(record))
            await self._bump(s)
            return record

        return await self._write(op, f"could not set the traffic split of '{model}': concurrent writers, try again")

    async def clear_traffic(self, model: str, *, actor: str) -> None:
        """Remove the split: unversioned calls follow the ``production`` alias again. A no-op when unset."""
        validate_actor(actor)

        async def op(s: AsyncSession) -> None:
            m = await self._model(s, model, lock=True)
            before = self._traffic_json(await self._traffic(s, m))
            if before is None:
                return
            await s.execute(delete(TrafficSplit).where(TrafficSplit.model_id == m.id))
            self._audit(s, actor, "traffic.clear", model, before, None)
            await self._bump(s)

        await self._write(op, f"could not clear the traffic split of '{model}': concurrent writers, try again")

    async def get_traffic(self, model: str) -> TrafficRecord | None:
        async def op(s: AsyncSession) -> TrafficRecord | None:
            return await self._traffic(s, await self._model(s, model))

        return await self._read(op)

    # -- routing ------------------------------------------------------------------------------------
    async def generation(self) -> int:
        """The routing generation: cheap to poll; when it moves, fetch :meth:`routing_snapshot`."""

        async def op(s: AsyncSession) -> int:
            return int((await s.execute(select(RegistryState.generation).where(RegistryState.id == 1))).scalar_one())

        return await self._read(op)

    async def routing_snapshot(self) -> RoutingSnapshot:
        """Every model's aliases, split and active versions, consistent at one generation.

        One transaction: a snapshot on SQLite (WAL), ``REPEATABLE READ`` on PostgreSQL.
        """

        async def op(s: AsyncSession) -> RoutingSnapshot:
            generation = (await s.execute(select(RegistryState.generation).where(RegistryState.id == 1))).scalar_one()
            names = dict((await s.execute(select(Model.id, Model.name))).all())
            active: dict[int, list[str]] = {mid: [] for mid in names}
            aliases: dict[int, dict[str, str]] = {mid: {} for mid in names}
            splits: dict[int, list[SplitEntry]] = {mid: [] for mid in names}
            versions = select(ModelVersion.model_id, ModelVersion.version).where(ModelVersion.status == "active")
            for mid, version in (await s.execute(versions.order_by(ModelVersion.number))).all():
                active[mid].append(version)
            alias_rows = select(Alias.model_id, Alias.name, ModelVersion.version).join(
                ModelVersion, Alias.version_id == ModelVersion.id
            )
            for mid, alias, version in (await s.execute(alias_rows)).all():
                aliases[mid][alias] = version
            split_rows = (
                select(TrafficSplit.model_id, ModelVersion.version, TrafficSplit.weight)
                .join(ModelVersion, TrafficSplit.version_id == ModelVersion.id)
                .order_by(ModelVersion.number)
            )
            for mid, version, weight in (await s.execute(split_rows)).all():
                splits[mid].append(SplitEntry(version, weight))
            models = {
                name: ModelRouting(aliases=aliases[mid], splits=tuple(splits[mid]), active_versions=tuple(active[mid]))
                for mid, name in names.items()
            }
            return RoutingSnapshot(generation=int(generation), models=models)

        return await self._read(op, snapshot=True)

    async def ping(self) -> None:
        """Raise :class:`DatabaseUnavailable` unless the database answers (readiness checks)."""

        async def op(s: AsyncSession) -> None:
            await s.execute(select(func.count()).select_from(RegistryState))

        await self._read(op)

    # -- API keys -----------------------------------------------------------------------------------
    async def create_api_key(self, name: str, scopes: Sequence[str], *, actor: str) -> tuple[str, ApiKeyRecord]:
        """A new random key (``mp_`` + 256 random bits); only its sha256 is stored.

        Returns the key, to be shown once, and its record.
        """
        validate_alias(name)
        scope_set = validate_scopes(scopes)
        validate_actor(actor)
        token = KEY_PREFIX + secrets.token_urlsafe(32)

        async def op(s: AsyncSession) -> ApiKeyRecord:
            if (await s.execute(select(ApiKey.id).where(ApiKey.name == name))).first():
                raise DuplicateKey(f"an API key named '{name}' already exists")
            row = ApiKey(name=name, key_hash=hash_api_key(token), scopes=list(scope_set), created_at=utcnow())
            s.add(row)
            await s.flush()
            self._audit(s, actor, "key.create", f"key:{name}", None, {"scopes": list(scope_set)})
            return _key_record(row)

        return token, await self._write(op, f"could not create key '{name}': concurrent writers, try again")

    async def authenticate(self, token: str) -> Principal | None:
        """The key's principal if the key exists and is not revoked (hashes compared in constant time)."""
        if not isinstance(token, str) or not token.startswith(KEY_PREFIX) or len(token) > _MAX_TOKEN:
            return None
        digest = hash_api_key(token)

        async def op(s: AsyncSession) -> ApiKey | None:
            return (await s.execute(select(ApiKey).where(ApiKey.key_hash == digest))).scalar_one_or_none()

        row = await self._read(op)
        if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, digest):
            return None
        return Principal(name=f"key:{row.name}", scopes=frozenset(row.scopes))

    async def revoke_api_key(self, name: str, *, actor: str) -> None:
        """Revoke a key at once (idempotent); the row stays for the audit trail."""
        validate_alias(name)
        validate_actor(actor)

        async def op(s: AsyncSession) -> None:
            row = (await s.execute(select(ApiKey).where(ApiKey.name == name))).scalar_one_or_none()
            if row is None:
                raise NotFound(f"no API key named '{name}'")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                self._audit(s, actor, "key.revoke", f"key:{name}", {"revoked": False}, {"revoked": True})

        await self._write(op, f"could not revoke key '{name}': concurrent writers, try again")

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        async def op(s: AsyncSession) -> list[ApiKeyRecord]:
            return [_key_record(k) for k in (await s.execute(select(ApiKey).order_by(ApiKey.name))).scalars()]

        return await self._read(op)

    # -- audit --------------------------------------------------------------------------------------
    async def list_audit(self, *, limit: int = 100, model: str | None = None) -> list[AuditRecord]:
        """Newest first; ``model`` keeps the model's own rows and those of its versions and aliases."""
        if model is not None:
            validate_model_name(model)

        async def op(s: AsyncSession) -> list[AuditRecord]:
            query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(max(1, min(limit, 10_000)))
            if model is not None:
                query = query.where(
                    or_(
                        AuditEntry.target == model,
                        AuditEntry.target.startswith(f"{model}:", autoescape=True),
                        AuditEntry.target.startswith(f"{model}/", autoescape=True),
                    )
                )
            return [
                AuditRecord(r.id, r.at, r.actor, r.action, r.target, dict(r.details or {}))
                for r in (await s.execute(query)).scalars()
            ]

        return await self._read(op)
