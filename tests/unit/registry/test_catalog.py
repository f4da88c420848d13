"""The catalog on SQLite and PostgreSQL: models and versions, numbering under concurrency; each refusal is
checked to have written nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from registry_db.errors import DuplicateKey, InvalidName, NotFound
from registry_db.repository import Registry
from tests.helpers.registry import SHA, footprint, version_kwargs


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
