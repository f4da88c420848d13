"""Routing on SQLite and PostgreSQL: aliases, splits and shadows only on active versions, the generation and its
NOTIFY; each refusal is checked to have written nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from registry_db.errors import Conflict, InvalidName, NotFound
from registry_db.migrate import upgrade_async
from registry_db.repository import NOTIFY_CHANNEL, Registry
from registry_db.session import create_engine
from tests.helpers.registry import footprint, version_kwargs


@pytest.mark.parametrize(
    "splits",
    [
        [("1", 50)],
        [("1", 60), ("2", 60)],
        [("1", 0), ("2", 100)],
        [("1", -10), ("2", 110)],
        [("1", 50), ("1", 50)],
        [("9", 100)],
        [("1", 50), ("x-of-other", 50)],
        [],
        [("1", 50.5), ("2", 49.5)],
    ],
)
async def test_bad_splits_refused(registry: Registry, splits: list[tuple[str, Any]]) -> None:
    await registry.catalog.add_version("m", version=None, **version_kwargs())
    await registry.catalog.add_version("m", version=None, **version_kwargs())
    await registry.catalog.add_version("other", version="x-of-other", **version_kwargs())
    before = await footprint(registry)
    with pytest.raises((InvalidName, NotFound)):
        await registry.routing.set_traffic("m", splits, actor="t")
    assert await footprint(registry) == before


async def test_alias_split_archive_rules(registry: Registry) -> None:
    for _ in range(3):
        await registry.catalog.add_version("m", version=None, **version_kwargs())
    await registry.catalog.add_version("other", version=None, **version_kwargs())
    await registry.routing.set_alias("m", "production", "1", actor="t")
    await registry.routing.set_traffic("m", [("1", 80), ("2", 20)], actor="t")
    with pytest.raises(NotFound):
        await registry.routing.set_alias("m", "staging", "7", actor="t")
    with pytest.raises(Conflict, match="alias 'production'"):
        await registry.catalog.archive_version("m", "1", actor="t")
    with pytest.raises(Conflict, match="traffic split"):
        await registry.catalog.archive_version("m", "2", actor="t")
    archived = await registry.catalog.archive_version("m", "3", actor="t")
    assert archived.status == "archived"
    before = await footprint(registry)
    assert (await registry.catalog.archive_version("m", "3", actor="t")).status == "archived"  # idempotent, silent
    with pytest.raises(Conflict, match="archived"):
        await registry.routing.set_alias("m", "production", "3", actor="t")
    with pytest.raises(Conflict, match="archived"):
        await registry.routing.set_traffic("m", [("3", 100)], actor="t")
    with pytest.raises(NotFound):
        await registry.routing.set_alias("nope", "production", "1", actor="t")
    with pytest.raises(InvalidName):
        await registry.routing.set_alias("m", "../prod", "1", actor="t")
    assert await footprint(registry) == before
    snapshot = await registry.routing.routing_snapshot()
    assert snapshot.models["m"].aliases == {"production": "1"}
    assert [(e.version, e.weight) for e in snapshot.models["m"].splits] == [("1", 80), ("2", 20)]
    assert snapshot.models["m"].active_versions == ("1", "2")
    assert snapshot.models["other"].active_versions == ("1",) and snapshot.models["other"].aliases == {}
    await registry.routing.clear_traffic("m", actor="t")
    await registry.routing.delete_alias("m", "production", actor="t")
    assert (await registry.routing.routing_snapshot()).models["m"].aliases == {}
    assert await registry.routing.get_traffic("m") is None
    await registry.catalog.archive_version("m", "1", actor="t")  # free now


async def test_shadow_version_recorded_and_protected(registry: Registry) -> None:
    for _ in range(3):
        await registry.catalog.add_version("m", version=None, **version_kwargs())
    before = await footprint(registry)
    for bad in [("1", 10), ("3", 0), ("3", 101), ("9", 10)]:
        with pytest.raises((InvalidName, NotFound)):
            await registry.routing.set_traffic("m", [("1", 50), ("2", 50)], shadow=bad, actor="t")
    assert await footprint(registry) == before
    record = await registry.routing.set_traffic("m", [("1", 50), ("2", 50)], shadow=("3", 25), actor="t")
    assert (record.shadow_version, record.shadow_percent) == ("3", 25)
    stored = await registry.routing.get_traffic("m")
    assert stored == record
    with pytest.raises(Conflict):
        await registry.catalog.archive_version("m", "3", actor="t")


async def test_alias_moves_between_versions_of_its_own_model_only(registry: Registry) -> None:
    await registry.catalog.add_version("a", version="blue", **version_kwargs())
    await registry.catalog.add_version("b", version="green", **version_kwargs())
    with pytest.raises(NotFound):
        await registry.routing.set_alias("a", "production", "green", actor="t")
    record = await registry.routing.set_alias("a", "production", "blue", actor="t")
    assert (record.model_name, record.alias, record.version) == ("a", "production", "blue")
    assert [a.alias for a in await registry.routing.list_aliases("b")] == []


async def test_generation_moves_with_every_routing_change_only(registry: Registry) -> None:
    seen = [await registry.routing.generation()]

    async def step(call: Any) -> None:
        await call
        seen.append(await registry.routing.generation())

    await step(registry.catalog.add_version("m", version=None, **version_kwargs()))
    await step(registry.catalog.add_version("m", version=None, **version_kwargs()))
    await step(registry.routing.set_alias("m", "production", "1", actor="t"))
    await step(registry.routing.set_traffic("m", [("1", 50), ("2", 50)], actor="t"))
    await step(registry.routing.clear_traffic("m", actor="t"))
    await step(registry.routing.delete_alias("m", "production", actor="t"))
    await step(registry.catalog.archive_version("m", "2", actor="t"))
    assert seen == list(range(seen[0], seen[0] + 8))
    await registry.keys.create_api_key("k", ["read"], actor="t")
    await registry.routing.clear_traffic("m", actor="t")  # nothing to clear: no change, no audit, no bump
    assert await registry.routing.generation() == seen[-1]
    assert (await registry.routing.routing_snapshot()).generation == seen[-1]


async def test_postgres_notifies_the_new_generation(fresh_pg_url: str) -> None:
    import asyncpg

    await upgrade_async(fresh_pg_url)
    registry = Registry(create_engine(fresh_pg_url))
    listener = await asyncpg.connect(fresh_pg_url.replace("postgresql+asyncpg://", "postgresql://"))
    received: asyncio.Queue[str] = asyncio.Queue()
    try:
        await listener.add_listener(NOTIFY_CHANNEL, lambda *args: received.put_nowait(args[-1]))
        await registry.catalog.add_version("m", version=None, **version_kwargs())
        await registry.routing.set_alias("m", "production", "1", actor="t")
        payloads = [await asyncio.wait_for(received.get(), 10) for _ in range(2)]
        assert payloads == [str(await registry.routing.generation() - 1), str(await registry.routing.generation())]
        with pytest.raises(NotFound):  # refused: rolled back, so nothing is notified
            await registry.routing.set_alias("m", "production", "9", actor="t")
        await registry.routing.set_alias("m", "staging", "1", actor="t")
        assert await asyncio.wait_for(received.get(), 10) == str(await registry.routing.generation())
    finally:
        await listener.close()
        await registry.close()
