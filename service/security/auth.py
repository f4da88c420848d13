"""Bearer API keys with scopes. Keys are compared in constant time and never logged.

``admin`` keys may change the registry; ``read`` keys may read admin data. The bootstrap key comes from
``MODELPORT_ADMIN_TOKEN``; more keys from ``modelport token create`` (stored hashed in the registry).
"""

from __future__ import annotations

import hmac
from typing import Any

from registry_db.errors import DatabaseUnavailable
from registry_db.records import Principal
from service.errors import Forbidden, RegistryUnavailable, Unauthorized

__all__ = ("Authenticator", "BOOTSTRAP_PRINCIPAL")

BOOTSTRAP_PRINCIPAL = Principal(name="bootstrap-admin", scopes=frozenset({"admin", "read"}))


class Authenticator:
    """Turns an ``Authorization`` header into a Principal, or refuses."""

    def __init__(self, *, registry: Any, admin_token: str | None) -> None:
        self._registry = registry
        self._admin_token = admin_token.encode() if admin_token else None

    @property
    def has_admin_token(self) -> bool:
        """Whether ``MODELPORT_ADMIN_TOKEN`` is set (authentication is on for the operations that follow it)."""
        return self._admin_token is not None

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("missing 'Authorization: Bearer <key>' header")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("expected 'Authorization: Bearer <key>'")
        if self._admin_token is not None and hmac.compare_digest(token.encode(), self._admin_token):
            return BOOTSTRAP_PRINCIPAL
        try:
            principal: Principal | None = await self._registry.keys.authenticate(token)
        except DatabaseUnavailable as exc:
            raise RegistryUnavailable(f"cannot check the API key: {exc}") from None
        if principal is None:
            raise Unauthorized("invalid or revoked API key")
        return principal

    async def require(self, authorization: str | None, scope: str) -> Principal:
        """Authenticate and check ``scope`` (``admin`` implies every scope)."""
        principal = await self.authenticate(authorization)
        if not principal.has(scope):
            raise Forbidden(f"this key lacks the '{scope}' scope")
        return principal
