"""Direct database helpers for arranging states a test needs (a run in a given status...)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, insert, select

from dmdesk.db.models import TrainingPair, TrainingRun, utcnow
from dmdesk.db.session import session_scope
from dmdesk.services.context import ServiceContext


def insert_run(
    ctx: ServiceContext,
    status: str,
    *,
    total: int = 200,
    processed: int = 0,
    heartbeat: datetime | None = None,
    owner: str | None = None,
    job_id: str | None = None,
    rows: int | None = None,
) -> int:
    now = utcnow()
    with session_scope(ctx.sessions) as s:
        run = TrainingRun(
            status=status,
            total_chunks=total,
            processed_chunks=processed,
            pair_count=0,
            settings={
                "vector_store_path": ctx.config.vector_store_path,
                "selection": {"rows": rows if rows is not None else total},
                "questions_per_chunk": 1,
                "deep_memory_backend": ctx.config.deep_memory_backend,
            },
            created_at=now,
            updated_at=now,
            heartbeat_at=heartbeat if heartbeat is not None else now,
            owner=owner,
            deeplake_job_id=job_id,
        )
        s.add(run)
        s.flush()
        return run.id


def insert_pairs(
    ctx: ServiceContext, run_id: int, chunk_ids: Sequence[str], approved: bool | None = None
) -> None:
    with session_scope(ctx.sessions) as s:
        s.execute(
            insert(TrainingPair),
            [
                {
                    "training_run_id": run_id,
                    "chunk_id": c,
                    "question": f"What is in {c}?",
                    "approved": approved,
                    "created_at": utcnow(),
                }
                for c in chunk_ids
            ],
        )


def pair_count(ctx: ServiceContext, run_id: int | None = None) -> int:
    with session_scope(ctx.sessions) as s:
        stmt = select(func.count()).select_from(TrainingPair)
        if run_id is not None:
            stmt = stmt.where(TrainingPair.training_run_id == run_id)
        return int(s.scalar(stmt) or 0)


def chunk_pair_counts(ctx: ServiceContext, run_id: int) -> dict[str, int]:
    with session_scope(ctx.sessions) as s:
        rows = s.execute(
            select(TrainingPair.chunk_id, func.count())
            .where(TrainingPair.training_run_id == run_id)
            .group_by(TrainingPair.chunk_id)
        ).all()
        return {c: int(n) for c, n in rows}


def long_ago(seconds: float = 3600) -> datetime:
    return utcnow() - timedelta(seconds=seconds)
