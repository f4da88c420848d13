"""Routing: aliases, the traffic split (with its shadow) and the generation-stamped routing snapshot.

Aliases and splits only point at active versions of the same model; weights are positive and sum to 100.
Every change here is routing-relevant, so the unit of work bumps the generation in the same transaction;
workers poll :meth:`RoutingRepository.generation` and fetch a new snapshot when it moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select

from registry_db.base import utcnow
from registry_db.errors import InvalidName, NotFound
from registry_db.models import Alias, Model, ModelVersion, RegistryState, TrafficSplit
from registry_db.records import AliasRecord, ModelRouting, RoutingSnapshot, SplitEntry, TrafficRecord
from registry_db.repository._rows import active_version_row, label_of, model_row
from registry_db.repository.unit_of_work import Transaction, UnitOfWork
from registry_db.validation import validate_alias, validate_splits, validate_version_label

__all__ = ("RoutingRepository",)


async def _traffic(tx: Transaction, model: Model) -> TrafficRecord | None:
    rows = (
        await tx.session.execute(
            select(
                ModelVersion.version, TrafficSplit.weight, TrafficSplit.shadow_version_id, TrafficSplit.shadow_percent
            )
            .join(ModelVersion, TrafficSplit.version_id == ModelVersion.id)
            .where(TrafficSplit.model_id == model.id)
            .order_by(ModelVersion.number)
        )
    ).all()
    if not rows:
        return None
    shadow_id, shadow_percent = rows[0][2], rows[0][3]
    shadow = await label_of(tx, shadow_id) if shadow_id is not None else None
    splits = tuple(SplitEntry(v, w) for v, w, _, _ in rows)
    return TrafficRecord(model.name, splits, shadow, shadow_percent if shadow else 0)


def _traffic_json(record: TrafficRecord | None) -> dict[str, Any] | None:
    """The audit form of a split (before / after)."""
    if record is None:
        return None
    data: dict[str, Any] = {"splits": [[e.version, e.weight] for e in record.splits]}
    if record.shadow_version:
        data["shadow"] = [record.shadow_version, record.shadow_percent]
    return data


def _check_shadow(shadow: tuple[str, int] | None, split_versions: set[str]) -> None:
    if shadow is None:
        return
    version, percent = str(shadow[0]), shadow[1]
    validate_version_label(version)
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 < percent <= 100:
        raise InvalidName(f"shadow percentage must be an integer in 1..100, got {percent!r}")
    if version in split_versions:
        raise InvalidName(f"shadow version '{version}' is already in the split")


async def _alias_row(tx: Transaction, model: Model, alias: str) -> Alias | None:
    query = select(Alias).where(Alias.model_id == model.id, Alias.name == alias)
    return (await tx.session.execute(query)).scalar_one_or_none()


class RoutingRepository:
    """Which version answers unversioned calls: aliases, splits, and the snapshot workers route by."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    # -- aliases ------------------------------------------------------------------------------------
    async def set_alias(self, model: str, alias: str, version: str, *, actor: str) -> AliasRecord:
        """Point ``alias`` at an active ``version`` (create or move it): promotion and rollback."""
        validate_alias(alias)
        validate_version_label(version)

        async def op(tx: Transaction) -> AliasRecord:
            m = await model_row(tx, model, lock=True)
            row = await active_version_row(tx, m, version)
            current = await _alias_row(tx, m, alias)
            before = None
            if current is None:
                current = Alias(model_id=m.id, name=alias, version_id=row.id, updated_at=utcnow())
                tx.session.add(current)
            else:
                before = await label_of(tx, current.version_id)
                current.version_id = row.id
                current.updated_at = utcnow()
            await tx.session.flush()
            tx.record("alias.set", f"{model}/{alias}", before, version, routing=True)
            return AliasRecord(model, alias, version, current.updated_at)

        conflict = f"could not set alias '{alias}' of '{model}': concurrent writers, try again"
        return await self._uow.write(op, actor=actor, conflict=conflict)

    async def delete_alias(self, model: str, alias: str, *, actor: str) -> None:
        validate_alias(alias)

        async def op(tx: Transaction) -> None:
            m = await model_row(tx, model, lock=True)
            current = await _alias_row(tx, m, alias)
            if current is None:
                raise NotFound(f"model '{model}' has no alias '{alias}'")
            before = await label_of(tx, current.version_id)
            await tx.session.delete(current)
            tx.record("alias.delete", f"{model}/{alias}", before, None, routing=True)

        conflict = f"could not delete alias '{alias}' of '{model}': concurrent writers, try again"
        await self._uow.write(op, actor=actor, conflict=conflict)

    async def list_aliases(self, model: str) -> list[AliasRecord]:
        async def op(tx: Transaction) -> list[AliasRecord]:
            m = await model_row(tx, model)
            query = (
                select(Alias, ModelVersion.version)
                .join(ModelVersion, Alias.version_id == ModelVersion.id)
                .where(Alias.model_id == m.id)
                .order_by(Alias.name)
            )
            return [AliasRecord(model, a.name, v, a.updated_at) for a, v in (await tx.session.execute(query)).all()]

        return await self._uow.read(op)

    # -- traffic ------------------------------------------------------------------------------------
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
        _check_shadow(shadow, {v for v, _ in pairs})

        async def op(tx: Transaction) -> TrafficRecord:
            m = await model_row(tx, model, lock=True)
            rows = [(await active_version_row(tx, m, v), w) for v, w in pairs]
            shadow_row = await active_version_row(tx, m, shadow[0]) if shadow is not None else None
            shadow_percent = shadow[1] if shadow is not None else 0
            before = _traffic_json(await _traffic(tx, m))
            await tx.session.execute(delete(TrafficSplit).where(TrafficSplit.model_id == m.id))
            for row, weight in rows:
                tx.session.add(
                    TrafficSplit(
                        model_id=m.id,
                        version_id=row.id,
                        weight=weight,
                        shadow_version_id=shadow_row.id if shadow_row else None,
                        shadow_percent=shadow_percent,
                    )
                )
            await tx.session.flush()
            record = TrafficRecord(
                model,
                tuple(SplitEntry(v, w) for v, w in pairs),
                shadow_row.version if shadow_row else None,
                shadow_percent,
            )
            tx.record("traffic.set", model, before, _traffic_json(record), routing=True)
            return record

        conflict = f"could not set the traffic split of '{model}': concurrent writers, try again"
        return await self._uow.write(op, actor=actor, conflict=conflict)

    async def clear_traffic(self, model: str, *, actor: str) -> None:
        """Remove the split: unversioned calls follow the ``production`` alias again. A no-op when unset."""

        async def op(tx: Transaction) -> None:
            m = await model_row(tx, model, lock=True)
            before = _traffic_json(await _traffic(tx, m))
            if before is None:
                return
            await tx.session.execute(delete(TrafficSplit).where(TrafficSplit.model_id == m.id))
            tx.record("traffic.clear", model, before, None, routing=True)

        conflict = f"could not clear the traffic split of '{model}': concurrent writers, try again"
        await self._uow.write(op, actor=actor, conflict=conflict)

    async def get_traffic(self, model: str) -> TrafficRecord | None:
        async def op(tx: Transaction) -> TrafficRecord | None:
            return await _traffic(tx, await model_row(tx, model))

        return await self._uow.read(op)

    # -- what workers route by ----------------------------------------------------------------------
    async def generation(self) -> int:
        """The routing generation: cheap to poll; when it moves, fetch :meth:`routing_snapshot`."""

        async def op(tx: Transaction) -> int:
            query = select(RegistryState.generation).where(RegistryState.id == 1)
            return int((await tx.session.execute(query)).scalar_one())

        return await self._uow.read(op)

    async def routing_snapshot(self) -> RoutingSnapshot:
        """Every model's aliases, split and active versions, consistent at one generation.

        One transaction: a snapshot on SQLite (WAL), ``REPEATABLE READ`` on PostgreSQL.
        """

        async def op(tx: Transaction) -> RoutingSnapshot:
            s = tx.session
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
                select(
                    TrafficSplit.model_id,
                    ModelVersion.version,
                    TrafficSplit.weight,
                    TrafficSplit.shadow_version_id,
                    TrafficSplit.shadow_percent,
                )
                .join(ModelVersion, TrafficSplit.version_id == ModelVersion.id)
                .order_by(ModelVersion.number)
            )
            shadow_ids: dict[int, tuple[int, int]] = {}
            for mid, version, weight, shadow_id, shadow_percent in (await s.execute(split_rows)).all():
                splits[mid].append(SplitEntry(version, weight))
                if shadow_id is not None and shadow_percent:
                    shadow_ids[mid] = (shadow_id, shadow_percent)
            labels = (
                dict(
                    (
                        await s.execute(
                            select(ModelVersion.id, ModelVersion.version).where(
                                ModelVersion.id.in_([sid for sid, _ in shadow_ids.values()])
                            )
                        )
                    ).all()
                )
                if shadow_ids
                else {}
            )
            models = {
                name: ModelRouting(
                    aliases=aliases[mid],
                    splits=tuple(splits[mid]),
                    active_versions=tuple(active[mid]),
                    shadow_version=labels.get(shadow_ids[mid][0]) if mid in shadow_ids else None,
                    shadow_percent=shadow_ids[mid][1] if mid in shadow_ids else 0,
                )
                for mid, name in names.items()
            }
            return RoutingSnapshot(generation=int(generation), models=models)

        return await self._uow.read(op, snapshot=True)
