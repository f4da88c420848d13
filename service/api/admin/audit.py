"""``/admin/audit``: who changed what, newest first."""

from __future__ import annotations

from litestar import Controller, get
from litestar.params import Parameter

from registry_db.records import Principal
from service.api.admin._base import ADMIN_DEPENDENCIES
from service.api.responses import errors
from service.runtime import Runtime
from service.schemas.admin import AuditOut

__all__ = ("AuditController",)


class AuditController(Controller):
    path = "/admin/audit"
    tags = ["admin: audit"]
    dependencies = ADMIN_DEPENDENCIES

    @get("", summary="Audit log, newest first", responses=errors(400, 401, 403, 503))
    async def audit(
        self,
        rt: Runtime,
        reader: Principal,
        limit: int = Parameter(default=100, ge=1, le=1000),
        model: str | None = Parameter(default=None, max_length=64),
    ) -> list[AuditOut]:
        assert rt.services is not None
        return [AuditOut.of(a) for a in await rt.services.registry.audit.list_audit(limit=limit, model=model)]
