"""Typed models of the two contract tables (DESIGN.md "Database").

One run works at a time (spec Assumption 3): the partial unique index `one_active_run` over the
constant `(1)` for every row in an active status; a second working run, from this process or
another, fails with an IntegrityError however the race is timed. FR-2 (no new generation while
any run is not completed) is the service's rule (dmdesk.services.runs). Run ids are never
reused (SQLite AUTOINCREMENT; PostgreSQL's sequence).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from dmdesk.domain.snapshot import RunSnapshot
from dmdesk.domain.status import ALL_STATUSES

# Named constraints, so batch migrations on SQLite can find them again (Airflow's habit).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    # PostgreSQL truncates identifiers at 63 characters: keep names short.
    "fk": "fk_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

RUNS = "deep_memory_training_runs"
PAIRS = "deep_memory_training_pairs"


def status_check_sql(statuses: tuple[str, ...]) -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")"


ACTIVE_RUN_WHERE = "status IN ('generating', 'training')"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; always returns aware UTC datetimes (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SnapshotJSON(TypeDecorator[RunSnapshot]):
    """A run's settings snapshot (:class:`dmdesk.domain.snapshot.RunSnapshot`) as JSON: the one
    place a snapshot becomes a record and back. A mapping is accepted too (a legacy row's
    shape, written by tests and benchmarks that fake old runs) and read as a snapshot."""

    impl = JSON
    cache_ok = True

    def process_bind_param(
        self, value: RunSnapshot | Mapping[str, Any] | None, dialect: Any
    ) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, RunSnapshot):
            value = RunSnapshot.from_record(value)
        return value.to_record() if value is not None else None

    def process_result_value(self, value: Any, dialect: Any) -> RunSnapshot | None:
        return RunSnapshot.from_record(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TrainingRun(Base):
    __tablename__ = RUNS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    total_chunks: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    processed_chunks: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    pair_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    error_message: Mapped[str | None] = mapped_column(Text)
    deeplake_job_id: Mapped[str | None] = mapped_column(String(128))
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    settings: Mapped[RunSnapshot | None] = mapped_column(SnapshotJSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow
    )
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Who runs it now ("host:pid:token"); a live owner's run is never taken over.
    owner: Mapped[str | None] = mapped_column(String(200))
    # The `usage` of every completion the run paid for (revision 0005).
    prompt_tokens: Mapped[int] = mapped_column(
        BigInteger, nullable=False, default=0, server_default=text("0")
    )
    completion_tokens: Mapped[int] = mapped_column(
        BigInteger, nullable=False, default=0, server_default=text("0")
    )

    pairs: Mapped[list[TrainingPair]] = relationship(
        back_populates="run", passive_deletes=True, cascade="save-update"
    )

    __table_args__ = (
        CheckConstraint(status_check_sql(ALL_STATUSES), name="status"),
        Index(
            "one_active_run",
            text("(1)"),
            unique=True,
            sqlite_where=text(ACTIVE_RUN_WHERE),
            postgresql_where=text(ACTIVE_RUN_WHERE),
        ),
        Index("ix_deep_memory_training_runs_created_at", "created_at"),
        {"sqlite_autoincrement": True},
    )


class TrainingPair(Base):
    __tablename__ = PAIRS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    training_run_id: Mapped[int] = mapped_column(
        ForeignKey(f"{RUNS}.id", ondelete="CASCADE"), nullable=False
    )
    chunk_id: Mapped[str] = mapped_column(String(512), nullable=False)
    question: Mapped[str] = mapped_column(Text, nullable=False)
    approved: Mapped[bool | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    # Quality filters' reasons (dmdesk.services.quality); NULL = nothing found against it.
    flags: Mapped[str | None] = mapped_column(String(300))

    run: Mapped[TrainingRun] = relationship(back_populates="pairs")

    __table_args__ = (Index("ix_pairs_run_chunk", "training_run_id", "chunk_id"),)
