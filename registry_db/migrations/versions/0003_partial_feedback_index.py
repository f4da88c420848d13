"""prediction log: the feedback index holds only predictions that got an outcome

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 16:10:00

Every served call inserts a prediction-log row with ``feedback_bucket`` NULL; only the few that receive an outcome
set it, and only those are ever read through this index (outcome sums by bucket, pruning of old outcomes). A
partial index skips one B-tree insert per prediction: with the unique (model, request_key) key and ``at``, two
index inserts per row are left.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = "ix_prediction_log_model_feedback_bucket"
_HAS_OUTCOME = sa.text("feedback_bucket IS NOT NULL")


def upgrade() -> None:
    op.drop_index(_NAME, table_name="prediction_log")
    op.create_index(
        _NAME,
        "prediction_log",
        ["model", "feedback_bucket"],
        unique=False,
        sqlite_where=_HAS_OUTCOME,
        postgresql_where=_HAS_OUTCOME,
    )


def downgrade() -> None:
    op.drop_index(_NAME, table_name="prediction_log")
    op.create_index(_NAME, "prediction_log", ["model", "feedback_bucket"], unique=False)
