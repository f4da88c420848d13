"""experiments: fleet stats, prediction log, rollouts, leases

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 12:32:36.308680
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("term", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "prediction_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("request_key", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prediction", sa.JSON(), nullable=False),
        sa.Column("feedback_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("feedback_bucket", sa.BigInteger(), nullable=True),
        sa.Column("truth", sa.JSON(), nullable=True),
        sa.Column("outcomes", sa.Integer(), nullable=False),
        sa.Column("correct", sa.Integer(), nullable=False),
        sa.Column("rewards", sa.Integer(), nullable=False),
        sa.Column("reward_sum", sa.Float(), nullable=False),
        sa.Column("reward_sq", sa.Float(), nullable=False),
        sa.Column("errors_n", sa.Integer(), nullable=False),
        sa.Column("abs_error_sum", sa.Float(), nullable=False),
        sa.Column("abs_error_sq", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prediction_log")),
        sa.UniqueConstraint("model", "request_key", name="uq_prediction_log_model_request_key"),
    )
    with op.batch_alter_table("prediction_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_prediction_log_at"), ["at"], unique=False)
        batch_op.create_index("ix_prediction_log_model_feedback_bucket", ["model", "feedback_bucket"], unique=False)

    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("candidate", sa.String(length=64), nullable=False),
        sa.Column("control", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("step_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decisions", sa.JSON(), nullable=False),
        sa.Column("last_check", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('running', 'promoted', 'rolled_back', 'aborted')", name=op.f("ck_rollouts_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
    )
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.create_index("ix_rollouts_model_state", ["model", "state"], unique=False)
        batch_op.create_index(
            "uq_rollouts_running_model",
            ["model"],
            unique=True,
            sqlite_where=sa.text("state = 'running'"),
            postgresql_where=sa.text("state = 'running'"),
        )

    op.create_table(
        "stats_buckets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("worker", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("bucket_start", sa.BigInteger(), nullable=False),
        sa.Column("bucket_s", sa.Integer(), nullable=False),
        sa.Column("counters", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_buckets")),
        sa.UniqueConstraint("worker", "model", "version", "bucket_start", name="uq_stats_buckets_worker_cell"),
    )
    with op.batch_alter_table("stats_buckets", schema=None) as batch_op:
        batch_op.create_index("ix_stats_buckets_model_bucket_start", ["model", "bucket_start"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("stats_buckets", schema=None) as batch_op:
        batch_op.drop_index("ix_stats_buckets_model_bucket_start")

    op.drop_table("stats_buckets")
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_rollouts_running_model",
            sqlite_where=sa.text("state = 'running'"),
            postgresql_where=sa.text("state = 'running'"),
        )
        batch_op.drop_index("ix_rollouts_model_state")

    op.drop_table("rollouts")
    with op.batch_alter_table("prediction_log", schema=None) as batch_op:
        batch_op.drop_index("ix_prediction_log_model_feedback_bucket")
        batch_op.drop_index(batch_op.f("ix_prediction_log_at"))

    op.drop_table("prediction_log")
    op.drop_table("leases")
