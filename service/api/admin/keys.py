"""``/admin/keys``: create, list and revoke API keys (admin scope). The key is shown once, at creation."""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from registry_db.records import ApiKeyRecord, Principal
from registry_db.repository import Registry
from service.api.admin._base import ADMIN_DEPENDENCIES, ADMIN_GUARDS, ADMIN_SECURITY
from service.api.responses import errors
from service.schemas.admin import CreateKeyBody

__all__ = ("KeysController",)


class KeyOut(msgspec.Struct, frozen=True):
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, r: ApiKeyRecord) -> KeyOut:
        return cls(r.name, list(r.scopes), r.created_at, r.revoked_at)


class CreatedKeyOut(msgspec.Struct, frozen=True):
    name: str
    scopes: list[str]
    token: str
    """Shown only in this response; only its hash is stored."""


class KeysController(Controller):
    path = "/admin/keys"
    tags = ["admin: keys"]
    dependencies = ADMIN_DEPENDENCIES
    guards = ADMIN_GUARDS
    security = ADMIN_SECURITY

    @post("", summary="Create an API key (returned once)", status_code=201, responses=errors(400, 401, 403, 409, 503))
    async def create(
        self, registry: NamedDependency[Registry], admin: NamedDependency[Principal], data: JSONBody[CreateKeyBody]
    ) -> CreatedKeyOut:
        token, record = await registry.keys.create_api_key(data.name, tuple(data.scopes), actor=admin.name)
        return CreatedKeyOut(record.name, list(record.scopes), token)

    @get("", summary="List API keys (never the keys themselves)", responses=errors(401, 403, 503))
    async def list_keys(self, registry: NamedDependency[Registry], admin: NamedDependency[Principal]) -> list[KeyOut]:
        return [KeyOut.of(k) for k in await registry.keys.list_api_keys()]

    @delete("/{name:str}", summary="Revoke an API key", status_code=204, responses=errors(401, 403, 404, 503))
    async def revoke(
        self, registry: NamedDependency[Registry], admin: NamedDependency[Principal], name: FromPath[str]
    ) -> None:
        await registry.keys.revoke_api_key(name, actor=admin.name)
