"""The read side of the runs of record: a run as the window and the CLI see it (`RunView`),
one run or all of them, each with its approved-pair count in one query. Jobs read their run
here, without building the service of commands (`dmdesk.services.runs`) that starts them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dmdesk.db.models import TrainingPair, TrainingRun
from dmdesk.db.session import session_scope
from dmdesk.deepmemory import adapters
from dmdesk.domain.errors import RunNotFound
from dmdesk.domain.models import RunView
from dmdesk.domain.snapshot import RunSnapshot
from dmdesk.domain.status import RunStatus
from dmdesk.llm.pricing import cost_usd
from dmdesk.services.context import ServiceContext


def to_view(
    run: TrainingRun, approved_count: int = 0, active_runs: frozenset[int] = frozenset()
) -> RunView:
    return RunView(
        id=run.id,
        status=RunStatus(run.status),
        total_chunks=run.total_chunks,
        processed_chunks=run.processed_chunks,
        pair_count=run.pair_count,
        error_message=run.error_message,
        deeplake_job_id=run.deeplake_job_id,
        metrics=run.metrics,
        settings=run.settings,
        created_at=run.created_at,
        updated_at=run.updated_at,
        heartbeat_at=run.heartbeat_at,
        approved_count=approved_count,
        model_active=run.id in active_runs,
        prompt_tokens=run.prompt_tokens or 0,
        completion_tokens=run.completion_tokens or 0,
        cost_usd=_cost(run),
    )


def _cost(run: TrainingRun) -> float | None:
    if not (run.prompt_tokens or run.completion_tokens):
        return None
    snapshot = run.settings or RunSnapshot()
    return cost_usd(
        snapshot.llm_model,
        run.prompt_tokens or 0,
        run.completion_tokens or 0,
        batch=snapshot.llm_mode == "batch",
    )


def approved_counts() -> Any:
    return (
        select(TrainingPair.training_run_id, func.count().label("n"))
        .where(TrainingPair.approved.is_(True))
        .group_by(TrainingPair.training_run_id)
        .subquery()
    )


def active_runs(ctx: ServiceContext) -> frozenset[int]:
    return adapters.active_runs(ctx.config.data_dir)


def list_runs(ctx: ServiceContext) -> list[RunView]:
    """All runs, newest first, with approved-pair counts: one query, whatever the count."""
    counts = approved_counts()
    stmt = (
        select(TrainingRun, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.training_run_id == TrainingRun.id)
        .order_by(TrainingRun.id.desc())
    )
    active = active_runs(ctx)
    with session_scope(ctx.sessions) as s:
        return [to_view(run, n, active) for run, n in s.execute(stmt).all()]


def get_run(ctx: ServiceContext, run_id: int) -> RunView:
    with session_scope(ctx.sessions) as s:
        return view(s, ctx, run_id)


def view(s: Session, ctx: ServiceContext, run_id: int) -> RunView:
    run = s.get(TrainingRun, run_id, populate_existing=True)
    if run is None:
        raise RunNotFound(run_id)
    approved = s.scalar(
        select(func.count())
        .select_from(TrainingPair)
        .where(TrainingPair.training_run_id == run_id, TrainingPair.approved.is_(True))
    )
    return to_view(run, approved or 0, active_runs(ctx))
