"""Registry rules on SQLite and PostgreSQL: each refusal is checked to have written nothing."""

from __future__ import annotations

from typing import Any

import pytest

from registry_db.errors import Conflict, DuplicateKey, InvalidName, NotFound
from registry_db.repository import Registry


def version_kwargs(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "backend": "onnx",
        "architecture": None,
        "architecture_config": {},
        "sha256": "ab" * 32,
        "size_bytes": 10,
        "storage_path": "sha256/ab/" + "ab" * 32,
        "signature": {"inputs": [], "outputs": []},
        "preprocessing": None,
        "postprocessing": None,
        "card": {"summary": "x"},
        "actor": "tester",
    }
    base.update(overrides)
    return base


async def footprint(reg: Registry) -> tuple[Any, ...]:
    """Everything a refused call must leave unchanged."""
    models = await reg.list_models()
    versions = [await reg.list_versions(m.name) for m in models]
    aliases = [await reg.list_aliases(m.name) for m in models]
    traffic = [await reg.get_traffic(m.name) for m in models]
    return (models, versions, aliases, traffic, len(await reg.list_audit(limit=10_000)), await reg.generation())


async def test_versions_number_from_one_and_labels(registry: Registry) -> None:
    v1 = await registry.add_version("digits", version=None, **version_kwargs())
    v2 = await registry.add_version("digits", version=None, **version_kwargs())
    beta = await registry.add_version("digits", version="beta-1", **version_kwargs())
    v4 = await registry.add_version("digits", version=None, **version_kwargs())
    assert [v1.version, v2.version, beta.version, v4.version] == ["1", "2", "beta-1", "4"]
    assert [v.number for v in await registry.list_versions("digits")] == [1, 2, 3, 4]
    shown = await registry.get_version("digits", "2")
    assert shown.sha256 == "ab" * 32 and shown.size_bytes == 10 and shown.created_at.tzinfo is not None
    assert shown.card == {"summary": "x"} and shown.created_by == "tester"


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "", "a\x00b", "x" * 4096, "-lead", "sp ace", "é"])
async def test_bad_model_names_refused_and_nothing_written(registry: Registry, name: str) -> None:
    before = await footprint(registry)
    with pytest.raises(InvalidName):
        await registry.add_version(name, version=None, **version_kwargs())
    with pytest.raises(InvalidName):
        await registry.create_model(name, actor="t")
    assert await footprint(registry) == before


@pytest.mark.parametrize("label", ["../1", "a/b", "", "x" * 65, "1\x00", ".hidden"])
async def test_bad_version_labels_refused(registry: Registry, label: str) -> None:
    before = await footprint(registry)
    with pytest.raises(InvalidName):
        await registry.add_version("m", version=label, **version_kwargs())
    assert await footprint(registry) == before


async def test_duplicate_label_refused(registry: Registry) -> None:
    await registry.add_version("m", version="a", **version_kwargs())
    before = await footprint(registry)
    with pytest.raises(DuplicateKey):
        await registry.add_version("m", version="a", **version_kwargs())
    with pytest.raises(DuplicateKey):
        await registry.create_model("m", actor="t")
    assert await footprint(registry) == before


@pytest.mark.parametrize(
    "splits",
    [
        [("1", 50)],
        [("1", 60), ("2", 60)],
        [("1", 0), ("2", 100)],
        [("1", -10), ("2", 110)],
        [("1", 50), ("1", 50)],
        [("9", 100)],
        [],
        [("1", 50.5), ("2", 49.5)],
    ],
)
async def test_bad_splits_refused(registry: Registry, splits: list[tuple[str, Any]]) -> None:
    await registry.add_version("m", version=None, **version_kwargs())
    await registry.add_version("m", version=None, **version_kwargs())
    before = await footprint(registry)
    with pytest.raises((InvalidName, NotFound)):
        await registry.set_traffic("m", splits, actor="t")
    assert await footprint(registry) == before


async def test_alias_split_archive_rules(registry: Registry) -> None:
    for _ in range(3):
        await registry.add_version("m", version=None, **version_kwargs())
    await registry.add_version("other", version=None, **version_kwargs())
    gen = await registry.generation()
    await registry.set_alias("m", "production", "1", actor="t")
    await registry.set_traffic("m", [("1", 80), ("2", 20)], actor="t")
    assert await registry.generation() == gen + 2
    with pytest.raises(NotFound):
        await registry.set_alias("m", "staging", "7", actor="t")
    with pytest.raises(Conflict):
        await registry.archive_version("m", "1", actor="t")
    with pytest.raises(Conflict):
        await registry.archive_version("m", "2", actor="t")
    archived = await registry.archive_version("m", "3", actor="t")
    assert archived.status == "archived"
    before = await footprint(registry)
    with pytest.raises(Conflict):
        await registry.set_alias("m", "production", "3", actor="t")
    with pytest.raises(Conflict):
        await registry.set_traffic("m", [("3", 100)], actor="t")
    with pytest.raises(NotFound):
        await registry.set_alias("nope", "production", "1", actor="t")
    assert await footprint(registry) == before
    snapshot = await registry.routing_snapshot()
    assert snapshot.models["m"].aliases == {"production": "1"}
    assert [(e.version, e.weight) for e in snapshot.models["m"].splits] == [("1", 80), ("2", 20)]
    assert snapshot.models["m"].active_versions == ("1", "2")
    await registry.clear_traffic("m", actor="t")
    await registry.delete_alias("m", "production", actor="t")
    assert (await registry.routing_snapshot()).models["m"].aliases == {}


async def test_audit_rows_record_before_and_after(registry: Registry) -> None:
    await registry.add_version("m", version=None, **version_kwargs())
    await registry.add_version("m", version=None, **version_kwargs())
    await registry.set_alias("m", "production", "1", actor="alice")
    await registry.set_alias("m", "production", "2", actor="bob")
    audit = await registry.list_audit(model="m")
    assert audit[0].action == "alias.set" and audit[0].actor == "bob"
    assert audit[0].details == {"before": "1", "after": "2"}
    assert {a.action for a in audit} >= {"model.create", "version.register", "alias.set"}


async def test_api_keys_hashed_scoped_revocable(registry: Registry) -> None:
    token, record = await registry.create_api_key("ops", ["admin"], actor="t")
    assert token.startswith("mp_") and len(token) > 40
    principal = await registry.authenticate(token)
    assert principal is not None and principal.has("admin") and principal.has("read")
    reader_token, _ = await registry.create_api_key("dash", ["read"], actor="t")
    reader = await registry.authenticate(reader_token)
    assert reader is not None and reader.has("read") and not reader.has("admin")
    assert await registry.authenticate(token + "x") is None
    assert await registry.authenticate("garbage") is None
    with pytest.raises(DuplicateKey):
        await registry.create_api_key("ops", ["read"], actor="t")
    with pytest.raises(InvalidName):
        await registry.create_api_key("x", ["root"], actor="t")
    await registry.revoke_api_key("ops", actor="t")
    assert await registry.authenticate(token) is None
    stored = [k for k in await registry.list_api_keys() if k.name == "ops"][0]
    assert stored.revoked_at is not None
    # only the hash is stored
    async with registry.engine.connect() as conn:
        from sqlalchemy import text

        rows = (await conn.execute(text("SELECT key_hash FROM api_keys"))).scalars().all()
    assert token not in rows and all(len(r) == 64 for r in rows)
