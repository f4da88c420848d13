"""``/admin/audit``: who changed what, newest first."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from registry_db.records import Principal
from registry_db.repository import Registry
from service.api.admin._base import ADMIN_DEPENDENCIES, ADMIN_GUARDS, ADMIN_SECURITY
from service.api.responses import errors
from service.schemas.admin import AuditOut

__all__ = ("AuditController",)


class AuditController(Controller):
    path = "/admin/audit"
    tags = ["admin: audit"]
    dependencies = ADMIN_DEPENDENCIES
    guards = ADMIN_GUARDS
    security = ADMIN_SECURITY

    @get("", summary="Audit log, newest first", responses=errors(400, 401, 403, 503))
    async def audit(
        self,
        registry: NamedDependency[Registry],
        reader: NamedDependency[Principal],
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        model: Annotated[str | None, QueryParameter(max_length=64)] = None,
    ) -> list[AuditOut]:
        return [AuditOut.of(a) for a in await registry.audit.list_audit(limit=limit, model=model)]
