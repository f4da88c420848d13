"""Registry rules on SQLite and PostgreSQL: each refusal is checked to have written nothing."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from registry_db.errors import Conflict, DatabaseUnavailable, DuplicateKey, InvalidName, NotFound
from registry_db.migrate import upgrade_async
from registry_db.repository import NOTIFY_CHANNEL, Registry
from registry_db.session import create_engine

SHA = "ab" * 32


def version_kwargs(**overrides: Any) -> dict[str, Any]:
    """Fields of a version whose (pretend) blob is already in the store."""
    sha = overrides.pop("sha256", SHA)
    base: dict[str, Any] = {
        "backend": "onnx",
        "architecture": None,
        "architecture_config": {},
        "sha256": sha,
        "size_bytes": 10,
        "storage_path": f"sha256/{sha[:2]}/{sha}",
        "signature": {"inputs": [], "outputs": []},
        "preprocessing": None,
        "postprocessing": None,
        "card": {"summary": "x"},
        "actor": "tester",
    }
    base.update(overrides)
    return base


async def row_counts(reg: Registry) -> dict[str, int]:
    tables = ("models", "model_versions", "aliases", "traffic_splits", "api_keys", "audit_log")
    async with reg.engine.connect() as conn:
        return {t: int((await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one()) for t in tables}


async def footprint(reg: Registry) -> tuple[Any, ...]:
    """Everything a refused call must leave unchanged: row counts, contents, audit and generation."""
    models = await reg.catalog.list_models()
    versions = [await reg.catalog.list_versions(m.name) for m in models]
    aliases = [await reg.routing.list_aliases(m.name) for m in models]
    traffic = [await reg.routing.get_traffic(m.name) for m in models]
    return (await row_counts(reg), models, versions, aliases, traffic, await reg.routing.generation())


# -- versions ---------------------------------------------------------------------------------------
async def test_versions_number_from_one_and_labels(registry: Registry) -> None:
    v1 = await registry.catalog.add_version("digits", version=None, **version_kwargs())
    v2 = await registry.catalog.add_version("digits", version=None, **version_kwargs())
    beta = await registry.catalog.add_version("digits", version="beta-1", **version_kwargs())
    v4 = await registry.catalog.add_version("digits", version=None, **version_kwargs())
    assert [v1.version, v2.version, beta.version, v4.version] == ["1", "2", "beta-1", "4"]
    assert [v.number for v in await registry.catalog.list_versions("digits")] == [1, 2, 3, 4]
    shown = await registry.catalog.get_version("digits", "2")
    assert shown.sha256 == SHA and shown.size_bytes == 10 and shown.storage_path == f"sha256/ab/{SHA}"
    assert shown.card == {"summary": "x"} and shown.created_by == "tester" and shown.status == "active"
    assert shown.created_at.tzinfo is not None and shown.created_at.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - shown.created_at) < timedelta(minutes=5)
    model = await registry.catalog.get_model("digits")
    assert model.created_at.tzinfo is not None and model.updated_at >= model.created_at


async def test_big_artifact_sizes_fit(registry: Registry) -> None:
    five_gib = 5 * 1024**3
    record = await registry.catalog.add_version("big", version=None, **version_kwargs(size_bytes=five_gib))
    assert (await registry.catalog.get_version("big", record.version)).size_bytes == five_gib


async def test_numeric_labels_are_reserved_for_numbering(registry: Registry) -> None:
    before = await footprint(registry)
    with pytest.raises(InvalidName, match="numeric"):
        await registry.catalog.add_version("m", version="7", **version_kwargs())
    with pytest.raises(InvalidName, match="numeric"):
        await registry.catalog.add_version("m", version="01", **version_kwargs())
    assert await footprint(registry) == before
    first = await registry.catalog.add_version("m", version="1", **version_kwargs())  # the number it gets anyway
    second = await registry.catalog.add_version("m", version=None, **version_kwargs())
    assert (first.version, first.number, second.version, second.number) == ("1", 1, "2", 2)


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "", "a\x00b", "x" * 4096, "-lead", "sp ace", "é"])
async def test_bad_model_names_refused_and_nothing_written(registry: Registry, name: str) -> None:
    before = await footprint(registry)
    with pytest.raises(InvalidName):
        await registry.catalog.add_version(name, version=None, **version_kwargs())
    with pytest.raises(InvalidName):
        await registry.catalog.create_model(name, actor="t")
    with pytest.raises(InvalidName):
        await registry.catalog.get_model(name)
    assert await footprint(registry) == before


@pytest.mark.parametrize("label", ["../1", "a/b", "", "x" * 65, "1\x00", ".hidden", "x" * 4096])
async def test_bad_version_labels_refused(registry: Registry, label: str) -> None:
    before = await footprint(registry)
    with pytest.raises(InvalidName):
        await registry.catalog.add_version("m", version=label, **version_kwargs())
    assert await footprint(registry) == before


@pytest.mark.parametrize(
    "overrides",
    [
        {"sha256": "xyz"},
        {"sha256": "AB" * 32},
        {"storage_path": "../../etc/passwd"},
        {"storage_path": "sha256/cd/" + SHA},
        {"size_bytes": -1},
        {"size_bytes": 1.5},
        {"backend": "../onnx"},
        {"backend": ""},
        {"architecture": "a b"},
        {"card": ["not", "an", "object"]},
        {"signature": "inputs"},
        {"actor": ""},
    ],
)
async def test_bad_version_fields_refused(registry: Registry, overrides: dict[str, Any]) -> None:
    before = await footprint(registry)
    with pytest.raises(InvalidName):
        await registry.catalog.add_version("m", version=None, **version_kwargs(**overrides))
    assert await footprint(registry) == before


async def test_duplicate_label_refused(registry: Registry) -> None:
    await registry.catalog.add_version("m", version="a", **version_kwargs())
    before = await footprint(registry)
    with pytest.raises(DuplicateKey):
        await registry.catalog.add_version("m", version="a", **version_kwargs())
    with pytest.raises(DuplicateKey):
        await registry.catalog.create_model("m", actor="t")
    assert await footprint(registry) == before
    other = await registry.catalog.add_version("other", version="a", **version_kwargs())  # labels are per model
    assert other.version == "a" and other.number == 1


async def test_unknown_model_or_version(registry: Registry) -> None:
    await registry.catalog.add_version("m", version=None, **version_kwargs())
    before = await footprint(registry)
    with pytest.raises(NotFound):
        await registry.catalog.add_version("new", version=None, create_model=False, **version_kwargs())
    with pytest.raises(NotFound):
        await registry.catalog.get_version("m", "9")
    with pytest.raises(NotFound):
        await registry.catalog.list_versions("nope")
    with pytest.raises(NotFound):
        await registry.catalog.archive_version("m", "9", actor="t")
    with pytest.raises(NotFound):
        await registry.routing.delete_alias("m", "production", actor="t")
    assert await footprint(registry) == before


async def test_create_model_then_versions(registry: Registry) -> None:
    created = await registry.catalog.create_model("m", description="digits classifier", actor="t")
    assert created.description == "digits classifier"
    version = await registry.catalog.add_version("m", version=None, create_model=False, **version_kwargs())
    assert version.version == "1"
    assert [m.name for m in await registry.catalog.list_models()] == ["m"]


# -- routing rules ----------------------------------------------------------------------------------
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


# -- audit and generation ---------------------------------------------------------------------------
async def test_every_mutation_is_audited_with_before_and_after(registry: Registry) -> None:
    await registry.catalog.create_model("m", description="d", actor="alice")
    await registry.catalog.add_version("m", version=None, **version_kwargs(actor="alice"))
    await registry.catalog.add_version("m", version=None, **version_kwargs(actor="alice"))
    await registry.routing.set_alias("m", "production", "1", actor="alice")
    await registry.routing.set_alias("m", "production", "2", actor="bob")
    await registry.routing.set_traffic("m", [("1", 90), ("2", 10)], actor="bob")
    await registry.routing.clear_traffic("m", actor="bob")
    await registry.routing.delete_alias("m", "production", actor="bob")
    await registry.catalog.archive_version("m", "1", actor="carol")
    await registry.keys.create_api_key("ops", ["admin"], actor="carol")
    await registry.keys.revoke_api_key("ops", actor="carol")
    audit = list(reversed(await registry.audit.list_audit(limit=1000)))
    assert [(a.action, a.target, a.actor) for a in audit] == [
        ("model.create", "m", "alice"),
        ("version.register", "m:1", "alice"),
        ("version.register", "m:2", "alice"),
        ("alias.set", "m/production", "alice"),
        ("alias.set", "m/production", "bob"),
        ("traffic.set", "m", "bob"),
        ("traffic.clear", "m", "bob"),
        ("alias.delete", "m/production", "bob"),
        ("version.archive", "m:1", "carol"),
        ("key.create", "key:ops", "carol"),
        ("key.revoke", "key:ops", "carol"),
    ]
    assert all({"before", "after"} <= set(a.details) for a in audit)
    assert audit[4].details == {"before": "1", "after": "2"}
    assert audit[5].details == {"before": None, "after": {"splits": [["1", 90], ["2", 10]]}}
    assert audit[6].details == {"before": {"splits": [["1", 90], ["2", 10]]}, "after": None}
    assert audit[8].details == {"before": "active", "after": "archived"}
    assert audit[1].details["after"]["sha256"] == SHA and audit[1].details["before"] is None
    assert all(a.at.tzinfo is not None for a in audit)
    assert [a.action for a in await registry.audit.list_audit(limit=2)] == ["key.revoke", "key.create"]


async def test_audit_filter_by_model_is_literal(registry: Registry) -> None:
    await registry.catalog.add_version("a_b", version=None, **version_kwargs())
    await registry.catalog.add_version("axb", version=None, **version_kwargs())
    assert {a.target for a in await registry.audit.list_audit(model="a_b")} == {"a_b", "a_b:1"}


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


# -- concurrency inside one process -----------------------------------------------------------------
async def test_concurrent_registrations_get_gap_free_numbers(registry: Registry) -> None:
    records = await asyncio.gather(
        *(registry.catalog.add_version("race", version=None, **version_kwargs(actor=f"w{i}")) for i in range(16))
    )
    assert sorted(r.number for r in records) == list(range(1, 17))
    assert sorted(int(r.version) for r in records) == list(range(1, 17))
    assert len([a for a in await registry.audit.list_audit(limit=100) if a.action == "model.create"]) == 1


async def test_concurrent_same_label_one_wins(registry: Registry) -> None:
    results = await asyncio.gather(
        *(registry.catalog.add_version("race", version="rc", **version_kwargs()) for _ in range(6)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, DuplicateKey) for r in results if isinstance(r, BaseException))
    assert [v.number for v in await registry.catalog.list_versions("race")] == [1]
    assert (await registry.catalog.add_version("race", version=None, **version_kwargs())).version == "2"


# -- API keys ---------------------------------------------------------------------------------------
async def test_api_keys_hashed_scoped_revocable(registry: Registry) -> None:
    token, record = await registry.keys.create_api_key("ops", ["admin"], actor="t")
    assert token.startswith("mp_") and len(token) > 40 and record.scopes == ("admin",)
    principal = await registry.keys.authenticate(token)
    assert principal is not None and principal.has("admin") and principal.has("read")
    assert principal.name == "key:ops"
    reader_token, _ = await registry.keys.create_api_key("dash", ["read"], actor="t")
    reader = await registry.keys.authenticate(reader_token)
    assert reader is not None and reader.has("read") and not reader.has("admin")
    for bad in [token + "x", token[:-1], "garbage", "", "mp_" + "a" * 5000, "Bearer " + token]:
        assert await registry.keys.authenticate(bad) is None
    before = await footprint(registry)
    with pytest.raises(DuplicateKey):
        await registry.keys.create_api_key("ops", ["read"], actor="t")
    with pytest.raises(InvalidName):
        await registry.keys.create_api_key("x", ["root"], actor="t")
    with pytest.raises(InvalidName):
        await registry.keys.create_api_key("x", [], actor="t")
    with pytest.raises(InvalidName):
        await registry.keys.create_api_key("../x", ["read"], actor="t")
    with pytest.raises(NotFound):
        await registry.keys.revoke_api_key("nobody", actor="t")
    assert await footprint(registry) == before
    await registry.keys.revoke_api_key("ops", actor="t")
    await registry.keys.revoke_api_key("ops", actor="t")  # idempotent
    assert await registry.keys.authenticate(token) is None
    assert await registry.keys.authenticate(reader_token) is not None
    stored = {k.name: k for k in await registry.keys.list_api_keys()}
    assert stored["ops"].revoked_at is not None and stored["dash"].revoked_at is None
    async with registry.engine.connect() as conn:  # only hashes are stored
        rows = (await conn.execute(text("SELECT key_hash FROM api_keys"))).scalars().all()
    assert token not in rows and all(len(r) == 64 for r in rows)
    audit_text = str([a.details for a in await registry.audit.list_audit(limit=100)])
    assert token not in audit_text and reader_token not in audit_text


# -- database errors --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:////nonexistent-dir-for-modelport-tests/registry.db",
        "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere",
    ],
)
async def test_unreachable_database_is_database_unavailable(url: str) -> None:
    registry = Registry(create_engine(url, **({"pool_timeout": 2} if "postgresql" in url else {})))
    try:
        with pytest.raises(DatabaseUnavailable):
            await registry.ping()
        with pytest.raises(DatabaseUnavailable):
            await registry.catalog.add_version("m", version=None, **version_kwargs())
    finally:
        await registry.close()
        # aiosqlite stops the worker thread of a failed connect without awaiting it; let it finish while this
        # test's event loop is still open (else it reports "Event loop is closed" into a later test)
        for thread in threading.enumerate():
            if "_connection_worker_thread" in thread.name:
                await asyncio.to_thread(thread.join, 10)


async def test_unmigrated_database_says_to_upgrade(db_url: str) -> None:
    registry = Registry(create_engine(db_url))
    try:
        with pytest.raises(DatabaseUnavailable, match="modelport db upgrade"):
            await registry.catalog.list_models()
    finally:
        await registry.close()
