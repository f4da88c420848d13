"""Registry tables (DESIGN §3). Only the repository queries them; only migrations (registry_db/migrations) make them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from registry_db.base import Base, TimestampMixin, UTCDateTime, utcnow

__all__ = (
    "Alias",
    "ApiKey",
    "AuditEntry",
    "Lease",
    "Model",
    "ModelVersion",
    "PredictionLogEntry",
    "RegistryState",
    "Rollout",
    "StatsBucket",
    "TrafficSplit",
)


class Model(TimestampMixin, Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    description: Mapped[str] = mapped_column(Text, default="", nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False)
    next_number: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    """Counter row for gap-free version numbers: incremented under a row lock by each registration."""

    versions: Mapped[list[ModelVersion]] = relationship(back_populates="model", order_by="ModelVersion.number")


class ModelVersion(TimestampMixin, Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version", name="uq_model_versions_model_id_version"),
        UniqueConstraint("model_id", "number", name="uq_model_versions_model_id_number"),
        CheckConstraint("status IN ('active', 'archived')", name="status"),
        CheckConstraint("size_bytes >= 0", name="size_nonnegative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), nullable=False, index=True)
    version: Mapped[str] = mapped_column(String(64), nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    backend: Mapped[str] = mapped_column(String(64), nullable=False)
    architecture: Mapped[str | None] = mapped_column(String(64), nullable=True)
    architecture_config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    storage_path: Mapped[str] = mapped_column(String(255), nullable=False)
    signature: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)
    preprocessing: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    postprocessing: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    card: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False)
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)

    model: Mapped[Model] = relationship(back_populates="versions")


class Alias(Base):
    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("model_id", "name", name="uq_aliases_model_id_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False)


class TrafficSplit(Base):
    __tablename__ = "traffic_splits"
    __table_args__ = (
        UniqueConstraint("model_id", "version_id", name="uq_traffic_splits_model_id_version_id"),
        CheckConstraint("weight > 0 AND weight <= 100", name="weight_range"),
        CheckConstraint("shadow_percent >= 0 AND shadow_percent <= 100", name="shadow_range"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), nullable=False, index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), nullable=False)
    weight: Mapped[int] = mapped_column(Integer, nullable=False)
    shadow_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"), nullable=True)
    shadow_percent: Mapped[int] = mapped_column(Integer, default=0, nullable=False)


class ApiKey(TimestampMixin, Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    scopes: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False, index=True)
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)


class RegistryState(Base):
    """One row: a generation bumped by every change that affects routing, polled by every worker."""

    __tablename__ = "registry_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)


class StatsBucket(Base):
    """One worker's counters for one model version over one time bucket (see ``service.experiments``).

    Each worker overwrites only its own rows with running totals, so flushes never race and a repeated flush
    never counts twice; the fleet's figures are the sum over workers. Keyed by names, not ids: statistics
    outlive an archived version.
    """

    __tablename__ = "stats_buckets"
    __table_args__ = (
        UniqueConstraint("worker", "model", "version", "bucket_start", name="uq_stats_buckets_worker_cell"),
        Index("ix_stats_buckets_model_bucket_start", "model", "bucket_start"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    worker: Mapped[str] = mapped_column(String(128), nullable=False)
    model: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[str] = mapped_column(String(64), nullable=False)
    bucket_start: Mapped[int] = mapped_column(BigInteger, nullable=False)
    """Epoch seconds, a multiple of ``bucket_s``."""
    bucket_s: Mapped[int] = mapped_column(Integer, nullable=False)
    counters: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class PredictionLogEntry(Base):
    """What a version predicted for one request id, so that an outcome sent later can be attributed to it.

    Written in batches, off the request path; the outcome columns are set once (a repeat is not counted).
    """

    __tablename__ = "prediction_log"
    __table_args__ = (
        UniqueConstraint("model", "request_key", name="uq_prediction_log_model_request_key"),
        # partial: only rows with an outcome are read through it, and most predictions never get one
        Index(
            "ix_prediction_log_model_feedback_bucket",
            "model",
            "feedback_bucket",
            sqlite_where=text("feedback_bucket IS NOT NULL"),
            postgresql_where=text("feedback_bucket IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(64), nullable=False)
    request_key: Mapped[str] = mapped_column(String(128), nullable=False)
    """The request id, or its sha256 when longer than fits."""
    version: Mapped[str] = mapped_column(String(64), nullable=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)
    prediction: Mapped[list[Any]] = mapped_column(JSON, nullable=False)
    """One entry per instance: a class label (str) or a value (float)."""
    feedback_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    feedback_bucket: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    truth: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    outcomes: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    """Instances that received a truth label (accuracy's denominator)."""
    correct: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    rewards: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    reward_sum: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    reward_sq: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    errors_n: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    """Numeric truths compared with numeric predictions (absolute error's denominator)."""
    abs_error_sum: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    abs_error_sq: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)


class Rollout(TimestampMixin, Base):
    """A candidate version ramped through weight steps by the rollout controller, with the evidence."""

    __tablename__ = "rollouts"
    __table_args__ = (
        CheckConstraint("state IN ('running', 'promoted', 'rolled_back', 'aborted')", name="state"),
        Index("ix_rollouts_model_state", "model", "state"),
        # at most one running rollout per model, even under concurrent starts
        Index(
            "uq_rollouts_running_model",
            "model",
            unique=True,
            sqlite_where=text("state = 'running'"),
            postgresql_where=text("state = 'running'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(64), nullable=False)
    candidate: Mapped[str] = mapped_column(String(64), nullable=False)
    control: Mapped[str] = mapped_column(String(64), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    step: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    """Index into ``plan['steps']`` of the weight the candidate has now."""
    plan: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    step_started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="", nullable=False)
    decisions: Mapped[list[Any]] = mapped_column(JSON, nullable=False)
    """Every transition (start, advance, promote, roll back, abort) with the evidence it was decided on."""
    last_check: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """The controller's latest evaluation (what it waits for, with the figures), overwritten each time."""
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)


class Lease(Base):
    """A named lease one replica holds at a time (the rollout controller's), taken over once it expires."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    term: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    """Bumped on every change of holder: a fencing token for the holder's writes."""
