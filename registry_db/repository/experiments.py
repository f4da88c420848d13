"""Experiment data: per-worker statistics buckets, the prediction log and the outcomes attributed through it.

None of this is audited (it is measurement, not a change anyone made) and none of it bumps the routing
generation. Writes are idempotent: a stats flush overwrites the worker's own row with running totals; a
prediction is inserted once per (model, request id), a repeat is ignored; an outcome is set at most once per
prediction, by a conditional update, so a duplicate or a concurrent repeat is never counted twice.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from registry_db.base import utcnow
from registry_db.models import PredictionLogEntry, StatsBucket
from registry_db.repository.unit_of_work import Transaction, UnitOfWork

__all__ = (
    "FeedbackTotals",
    "LoggedPrediction",
    "Outcome",
    "OutcomeClaim",
    "OutcomeSums",
    "PredictionRecord",
    "ExperimentsRepository",
    "request_key",
)

_MAX_KEY = 128
_ENCODER = msgspec.json.Encoder()
_INSERT_PREDICTION = (
    "INSERT INTO prediction_log (model, request_key, version, at, prediction, outcomes, correct, rewards, "
    "reward_sum, reward_sq, errors_n, abs_error_sum, abs_error_sq) VALUES ({}, {}, {}, {}, {}, 0, 0, 0, 0, 0, 0, 0, 0) "
    "ON CONFLICT (model, request_key) DO NOTHING"
)


def request_key(request_id: str) -> str:
    """The prediction log's key for a request id: the id itself when it fits, else its sha256."""
    if len(request_id) <= _MAX_KEY:
        return request_id
    return "sha256:" + hashlib.sha256(request_id.encode("utf-8", "surrogatepass")).hexdigest()


def _json(entry: LoggedPrediction) -> str:
    return _ENCODER.encode(entry.prediction).decode()


class _SqliteStamps:
    """Epoch seconds as SQLAlchemy's SQLite DATETIME text (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC), the date and
    time formatted once per second: a batch of a second's predictions shares them (isoformat per row cost more
    than the rest of the row)."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, at: float) -> str:
        second = int(at)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((at - second) * 1e6):06d}"


@dataclass(frozen=True, slots=True)
class LoggedPrediction:
    """One served call as the log keeps it (``prediction``: per instance, a label or a value)."""

    model: str
    request_id: str
    version: str
    at: float
    """When it was served, in epoch seconds (a datetime is made only where a driver needs one)."""
    prediction: list[Any]


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    model: str
    version: str
    at: datetime
    prediction: list[Any]


@dataclass(slots=True)
class OutcomeSums:
    """What outcomes add to a version: sums, so that they add up across predictions, workers and replicas."""

    outcomes: int = 0
    """Instances that received a truth label (accuracy's denominator)."""
    correct: int = 0
    rewards: int = 0
    reward_sum: float = 0.0
    reward_sq: float = 0.0
    errors_n: int = 0
    """Numeric truths compared with numeric predictions (absolute error's denominator)."""
    abs_error_sum: float = 0.0
    abs_error_sq: float = 0.0

    def add(self, other: OutcomeSums) -> None:
        for name in _SUM_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def columns(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _SUM_FIELDS}


_SUM_FIELDS = tuple(OutcomeSums.__dataclass_fields__)
_DEFAULTS = tuple(getattr(OutcomeSums(), name) for name in _SUM_FIELDS)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one feedback item adds to its prediction's version, and the truth it was scored against."""

    truth: list[Any] | None
    sums: OutcomeSums


@dataclass(frozen=True, slots=True)
class OutcomeClaim:
    """How a feedback item fared: ``recorded``, ``duplicate``, ``unknown`` or ``expired``."""

    state: str
    prediction: PredictionRecord | None = None


@dataclass(frozen=True, slots=True)
class FeedbackTotals:
    """Outcome sums of one version over one feedback bucket."""

    version: str
    bucket_start: int
    items: int
    sums: OutcomeSums


def _insert(tx: Transaction) -> Any:
    return postgresql.insert if tx.postgres else sqlite.insert


class ExperimentsRepository:
    """Statistics buckets and the prediction log."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    # -- statistics buckets ---------------------------------------------------------------------------
    async def write_buckets(
        self, worker: str, bucket_s: int, rows: Sequence[tuple[str, str, int, dict[str, Any]]]
    ) -> None:
        """Upsert this worker's running totals ``(model, version, bucket_start, counters)`` in one transaction."""
        if not rows:
            return

        async def op(tx: Transaction) -> None:
            now = utcnow()
            values = [
                {
                    "worker": worker,
                    "model": model,
                    "version": version,
                    "bucket_start": start,
                    "bucket_s": bucket_s,
                    "counters": counters,
                    "updated_at": now,
                }
                for model, version, start, counters in rows
            ]
            statement = _insert(tx)(StatsBucket).values(values)
            statement = statement.on_conflict_do_update(
                index_elements=["worker", "model", "version", "bucket_start"],
                set_={"counters": statement.excluded.counters, "updated_at": statement.excluded.updated_at},
            )
            await tx.session.execute(statement)

        await self._uow.unaudited(op)

    async def read_buckets(self, model: str, since: int) -> list[tuple[str, int, int, dict[str, Any]]]:
        """Every worker's ``(version, bucket_start, bucket_s, counters)`` of ``model`` from ``since`` on."""

        async def op(tx: Transaction) -> list[tuple[str, int, int, dict[str, Any]]]:
            query = (
                select(StatsBucket.version, StatsBucket.bucket_start, StatsBucket.bucket_s, StatsBucket.counters)
                .where(StatsBucket.model == model, StatsBucket.bucket_start >= since)
                .order_by(StatsBucket.bucket_start)
            )
            return [(v, int(b), int(s), dict(c)) for v, b, s, c in (await tx.session.execute(query)).all()]

        return await self._uow.read(op)

    async def workers_since(self, model: str, since: int) -> int:
        """How many distinct workers reported on ``model`` from ``since`` on (the stats page says it)."""

        async def op(tx: Transaction) -> int:
            query = select(func.count(func.distinct(StatsBucket.worker))).where(
                StatsBucket.model == model, StatsBucket.bucket_start >= since
            )
            return int((await tx.session.execute(query)).scalar_one())

        return await self._uow.read(op)

    # -- prediction log -------------------------------------------------------------------------------
    async def log_predictions(self, entries: Sequence[LoggedPrediction]) -> None:
        """Insert a batch; a (model, request id) already logged keeps its first prediction."""
        if not entries:
            return

        async def op(tx: Transaction) -> None:
            # one prepared statement run by the driver for every row: SQLAlchemy's per-row type processing and
            # defaults cost ~4x more CPU on the event loop (42 vs 11 us a row), and this runs every second
            if tx.postgres:
                sql = _INSERT_PREDICTION.format(*(f"${i}" for i in range(1, 6)))
                rows: list[tuple[Any, ...]] = [
                    (e.model, request_key(e.request_id), e.version, datetime.fromtimestamp(e.at, UTC), _json(e))
                    for e in entries
                ]
            else:
                sql = _INSERT_PREDICTION.format(*("?" * 5))
                stamp = _SqliteStamps()
                rows = [(e.model, request_key(e.request_id), e.version, stamp(e.at), _json(e)) for e in entries]
            connection = await tx.session.connection()
            await connection.exec_driver_sql(sql, rows)

        await self._uow.unaudited(op)

    async def claim_outcome(
        self,
        model: str,
        request_id: str,
        *,
        not_before: datetime,
        bucket_s: int,
        score: Callable[[PredictionRecord], Outcome],
    ) -> OutcomeClaim:
        """Attribute one outcome to the prediction ``request_id`` got from ``model``, at most once.

        ``score`` turns the logged prediction into the sums to add (it raises the caller's error when the
        truth does not fit the prediction; nothing is written then). Predictions made before ``not_before``
        are expired.
        """
        key = request_key(request_id)

        async def op(tx: Transaction) -> OutcomeClaim:
            query = select(PredictionLogEntry).where(
                PredictionLogEntry.model == model, PredictionLogEntry.request_key == key
            )
            row = (await tx.session.execute(query)).scalar_one_or_none()
            if row is None:
                return OutcomeClaim("unknown")
            record = PredictionRecord(row.model, row.version, row.at, list(row.prediction))
            if row.feedback_at is not None:
                return OutcomeClaim("duplicate", record)
            if row.at < not_before:
                return OutcomeClaim("expired", record)
            outcome = score(record)
            now = utcnow()
            epoch = int(now.timestamp())
            changed = await tx.session.execute(
                update(PredictionLogEntry)
                .where(PredictionLogEntry.id == row.id, PredictionLogEntry.feedback_at.is_(None))
                .values(
                    feedback_at=now,
                    feedback_bucket=epoch - epoch % bucket_s,
                    truth=outcome.truth,
                    **outcome.sums.columns(),
                )
                .execution_options(synchronize_session=False)
            )
            return OutcomeClaim("recorded" if changed.rowcount == 1 else "duplicate", record)  # type: ignore[attr-defined]

        return await self._uow.unaudited(op)

    async def feedback_totals(self, model: str, since: int) -> list[FeedbackTotals]:
        """Outcome sums per (version, feedback bucket) of ``model`` from ``since`` on, summed in the database."""
        p = PredictionLogEntry

        async def op(tx: Transaction) -> list[FeedbackTotals]:
            columns = [func.sum(getattr(p, name)) for name in _SUM_FIELDS]
            query = (
                select(p.version, p.feedback_bucket, func.count(), *columns)
                .where(p.model == model, p.feedback_bucket >= since)
                .group_by(p.version, p.feedback_bucket)
                .order_by(p.feedback_bucket)
            )
            return [
                FeedbackTotals(
                    str(row[0]),
                    int(row[1] or 0),
                    int(row[2]),
                    OutcomeSums(
                        *(type(default)(value or 0) for default, value in zip(_DEFAULTS, row[3:], strict=True))
                    ),
                )
                for row in (await tx.session.execute(query)).all()
            ]

        return await self._uow.read(op)

    # -- retention ------------------------------------------------------------------------------------
    async def prune(self, *, stats_before: int, predictions_before: datetime) -> tuple[int, int]:
        """Drop statistics buckets and outcomes older than ``stats_before`` (epoch s) and predictions made before
        ``predictions_before`` that never got an outcome; returns how many rows of each went."""

        async def op(tx: Transaction) -> tuple[int, int]:
            s = tx.session
            stats = await s.execute(delete(StatsBucket).where(StatsBucket.bucket_start < stats_before))
            unanswered = await s.execute(
                delete(PredictionLogEntry).where(
                    PredictionLogEntry.at < predictions_before, PredictionLogEntry.feedback_at.is_(None)
                )
            )
            answered = await s.execute(
                delete(PredictionLogEntry).where(PredictionLogEntry.feedback_bucket < stats_before)
            )
            return (
                int(stats.rowcount),  # type: ignore[attr-defined]
                int(unanswered.rowcount) + int(answered.rowcount),  # type: ignore[attr-defined]
            )

        return await self._uow.unaudited(op)
