"""The audit log: every mutation, with actor, before and after, in order; filtering by model."""

from __future__ import annotations

from registry_db.repository import Registry
from tests.helpers.registry import SHA, version_kwargs


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
