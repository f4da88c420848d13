"""Reading the audit log. Rows are written only by the unit of work, in the transaction of the change."""

from __future__ import annotations

from sqlalchemy import or_, select

from registry_db.models import AuditEntry
from registry_db.records import AuditRecord
from registry_db.repository.unit_of_work import Transaction, UnitOfWork
from registry_db.validation import validate_model_name

__all__ = ("AuditRepository",)


class AuditRepository:
    """Who changed what, newest first."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def list_audit(self, *, limit: int = 100, model: str | None = None) -> list[AuditRecord]:
        """Newest first; ``model`` keeps the model's own rows and those of its versions and aliases."""
        if model is not None:
            validate_model_name(model)

        async def op(tx: Transaction) -> list[AuditRecord]:
            query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(max(1, min(limit, 10_000)))
            if model is not None:
                query = query.where(
                    or_(
                        AuditEntry.target == model,
                        AuditEntry.target.startswith(f"{model}:", autoescape=True),
                        AuditEntry.target.startswith(f"{model}/", autoescape=True),
                    )
                )
            return [
                AuditRecord(r.id, r.at, r.actor, r.action, r.target, dict(r.details or {}))
                for r in (await tx.session.execute(query)).scalars()
            ]

        return await self._uow.read(op)
