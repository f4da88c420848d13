"""API keys: hashed, scoped, revocable, never stored or audited in the clear."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from registry_db.errors import DuplicateKey, InvalidName, NotFound
from registry_db.repository import Registry
from tests.helpers.registry import footprint


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
