"""API keys: created random, stored as sha256 hashes only, scoped, revocable (rows stay for the audit trail)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

from sqlalchemy import select

from registry_db.base import utcnow
from registry_db.errors import DuplicateKey, NotFound
from registry_db.models import ApiKey
from registry_db.records import ApiKeyRecord, Principal
from registry_db.repository.unit_of_work import Transaction, UnitOfWork
from registry_db.validation import validate_alias, validate_scopes

__all__ = ("KEY_PREFIX", "ApiKeyRepository", "hash_api_key")

KEY_PREFIX = "mp_"
_MAX_TOKEN = 200


def hash_api_key(token: str) -> str:
    """The stored form of an API key: sha256 hex (keys are 256-bit random, so no salt or KDF is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _key_record(k: ApiKey) -> ApiKeyRecord:
    return ApiKeyRecord(k.id, k.name, tuple(k.scopes), k.created_at, k.revoked_at)


class ApiKeyRepository:
    """Who may call the admin API. Key changes are audited; they never touch routing."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def create_api_key(self, name: str, scopes: Sequence[str], *, actor: str) -> tuple[str, ApiKeyRecord]:
        """A new random key (``mp_`` + 256 random bits); only its sha256 is stored.

        Returns the key, to be shown once, and its record.
        """
        validate_alias(name)
        scope_set = validate_scopes(scopes)
        token = KEY_PREFIX + secrets.token_urlsafe(32)

        async def op(tx: Transaction) -> ApiKeyRecord:
            if (await tx.session.execute(select(ApiKey.id).where(ApiKey.name == name))).first():
                raise DuplicateKey(f"an API key named '{name}' already exists")
            row = ApiKey(name=name, key_hash=hash_api_key(token), scopes=list(scope_set), created_at=utcnow())
            tx.session.add(row)
            await tx.session.flush()
            tx.record("key.create", f"key:{name}", None, {"scopes": list(scope_set)}, routing=False)
            return _key_record(row)

        conflict = f"could not create key '{name}': concurrent writers, try again"
        return token, await self._uow.write(op, actor=actor, conflict=conflict)

    async def authenticate(self, token: str) -> Principal | None:
        """The key's principal if the key exists and is not revoked (hashes compared in constant time)."""
        if not isinstance(token, str) or not token.startswith(KEY_PREFIX) or len(token) > _MAX_TOKEN:
            return None
        digest = hash_api_key(token)

        async def op(tx: Transaction) -> ApiKey | None:
            return (await tx.session.execute(select(ApiKey).where(ApiKey.key_hash == digest))).scalar_one_or_none()

        row = await self._uow.read(op)
        if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, digest):
            return None
        return Principal(name=f"key:{row.name}", scopes=frozenset(row.scopes))

    async def revoke_api_key(self, name: str, *, actor: str) -> None:
        """Revoke a key at once (idempotent); the row stays for the audit trail."""
        validate_alias(name)

        async def op(tx: Transaction) -> None:
            row = (await tx.session.execute(select(ApiKey).where(ApiKey.name == name))).scalar_one_or_none()
            if row is None:
                raise NotFound(f"no API key named '{name}'")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                tx.record("key.revoke", f"key:{name}", {"revoked": False}, {"revoked": True}, routing=False)

        await self._uow.write(op, actor=actor, conflict=f"could not revoke key '{name}': concurrent writers, try again")

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        async def op(tx: Transaction) -> list[ApiKeyRecord]:
            return [_key_record(k) for k in (await tx.session.execute(select(ApiKey).order_by(ApiKey.name))).scalars()]

        return await self._uow.read(op)
