"""TrainingRunService: every rule of ZIP-004/ZIP-005 about runs, in one place.

* FR-2: `start_generation` is refused while any run is not completed. The check names the
  blocking run; the database's `one_open_run` index makes the rule hold between processes too.
* FR-3/FR-4: `proceed` moves a failed run back to its active status and clears the error; the
  caller then runs the job for that phase (`run_job`).
* FR-5: `remove` deletes a failed run; ON DELETE CASCADE removes its pairs.
* Stale runs (a process that died) become failed at start-up and before any new generation.

Every state change is a conditional UPDATE (`WHERE id = ? AND status = ?`), so two processes
acting on the same run cannot both succeed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dmdesk.db.models import TrainingPair, TrainingRun
from dmdesk.db.session import session_scope
from dmdesk.deepmemory import adapters
from dmdesk.domain.errors import (
    GenerationBlocked,
    InvalidSettings,
    RuleViolation,
    RunNotFound,
)
from dmdesk.domain.models import PairView, ProgressUpdate, RunView
from dmdesk.domain.status import (
    ACTIVE,
    FAILED,
    FAILURE_OF,
    RESUMES_TO,
    RunStatus,
    check_transition,
)
from dmdesk.services.context import ServiceContext
from dmdesk.services.settings import availability

log = logging.getLogger(__name__)

ProgressCallback = Callable[[ProgressUpdate], None]


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
    )


def _approved_counts() -> Any:
    return (
        select(TrainingPair.training_run_id, func.count().label("n"))
        .where(TrainingPair.approved.is_(True))
        .group_by(TrainingPair.training_run_id)
        .subquery()
    )


class TrainingRunService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    # -- reading -------------------------------------------------------------------------------

    def list_runs(self) -> list[RunView]:
        """All runs, newest first, with approved-pair counts: one query, whatever the count."""
        counts = _approved_counts()
        stmt = (
            select(TrainingRun, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.training_run_id == TrainingRun.id)
            .order_by(TrainingRun.id.desc())
        )
        active = self._active_runs()
        with session_scope(self.ctx.sessions) as s:
            return [to_view(run, n, active) for run, n in s.execute(stmt).all()]

    def _active_runs(self) -> frozenset[int]:
        return adapters.active_runs(self.ctx.config.data_dir)

    def get_run(self, run_id: int) -> RunView:
        with session_scope(self.ctx.sessions) as s:
            return self._view(s, run_id)

    def _view(self, s: Session, run_id: int) -> RunView:
        run = s.get(TrainingRun, run_id, populate_existing=True)
        if run is None:
            raise RunNotFound(run_id)
        approved = s.scalar(
            select(func.count())
            .select_from(TrainingPair)
            .where(TrainingPair.training_run_id == run_id, TrainingPair.approved.is_(True))
        )
        return to_view(run, approved or 0, self._active_runs())

    def blocking_run(self) -> RunView | None:
        """The run that blocks a new generation (FR-2), if any."""
        with session_scope(self.ctx.sessions) as s:
            run = s.scalar(
                select(TrainingRun)
                .where(TrainingRun.status != RunStatus.COMPLETED.value)
                .order_by(TrainingRun.id.desc())
                .limit(1)
            )
            return to_view(run) if run else None

    # -- stale runs ----------------------------------------------------------------------------

    def recover_stale(self) -> list[RunView]:
        """Deal with every active run whose heartbeat is older than `stale_after_s` (its process
        died). A DeepLake Cloud training run with a job id keeps running remotely: it is
        re-attached — claimed by this process, flagged `attach_job_id` so the training job
        follows that job instead of re-submitting — and returned with status `training`; the
        caller must run its job (`dmdesk.app.start` hands it to a detached worker). Every other
        stale run becomes generating_failed / training_failed with an "interrupted" message.

        Each update is conditional on the heartbeat it read, so a run whose owner beats in the
        meantime is left alone."""
        now = self.ctx.clock()
        cutoff = now - timedelta(seconds=self.ctx.config.stale_after_s)
        recovered: list[RunView] = []
        with session_scope(self.ctx.sessions) as s:
            stale = s.execute(
                select(
                    TrainingRun.id,
                    TrainingRun.status,
                    TrainingRun.heartbeat_at,
                    TrainingRun.deeplake_job_id,
                    TrainingRun.settings,
                ).where(
                    TrainingRun.status.in_([a.value for a in ACTIVE]),
                    (TrainingRun.heartbeat_at.is_(None)) | (TrainingRun.heartbeat_at < cutoff),
                )
            ).all()
        for run_id, status, beat, job_id, settings in stale:
            cond = [TrainingRun.id == run_id, TrainingRun.status == status]
            cond.append(
                TrainingRun.heartbeat_at.is_(None)
                if beat is None
                else TrainingRun.heartbeat_at == beat
            )
            settings = dict(settings or {})
            if (
                status == RunStatus.TRAINING
                and job_id
                and settings.get("deep_memory_backend") == "deeplake"
            ):
                values: dict[str, Any] = {
                    "owner": self.ctx.owner,
                    "heartbeat_at": now,
                    "updated_at": now,
                    "settings": settings | {"attach_job_id": job_id},
                }
                note = f"re-attached to DeepLake job {job_id}"
            else:
                when = beat.strftime("%Y-%m-%d %H:%M:%S UTC") if beat else "an unknown time"
                phase = "Generation" if status == RunStatus.GENERATING else "Training"
                note = (
                    f"{phase} was interrupted: the dmdesk process running it stopped responding "
                    f"(last heartbeat {when}). Proceed resumes it; Remove deletes it."
                )
                values = {
                    "status": FAILURE_OF[RunStatus(status)].value,
                    "error_message": note,
                    "owner": None,
                    "updated_at": now,
                }
            with session_scope(self.ctx.sessions) as s:
                done = s.execute(
                    update(TrainingRun)
                    .where(*cond)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                ).rowcount  # type: ignore[attr-defined]
                if done:
                    log.warning("run %s: %s", run_id, note)
                    recovered.append(self._view(s, run_id))
        return recovered

    # -- generation ----------------------------------------------------------------------------

    def _require_available(self) -> None:
        _, available, reason = availability(self.ctx.config)
        if not available:
            raise RuleViolation(reason or "Deep Memory is not available.")

    def start_generation(self) -> RunView:
        """Create a run in `generating` (the job is started by the caller with `run_job`).

        Refused (GenerationBlocked, FR-2) while any run is not completed. The settings snapshot
        records the chunk selection (rows [0, N) of the store as it is now), so a resume works on
        the same set even if chunks are added later.
        """
        self.recover_stale()
        self._require_available()
        blocker = self.blocking_run()
        if blocker is not None:
            raise GenerationBlocked(blocker.id, blocker.status.value)
        cfg = self.ctx.config
        store = self.ctx.vector_store_factory(cfg.vector_store_path)
        try:
            rows = store.row_count()
        finally:
            store.close()
        if cfg.chunk_limit is not None:
            rows = min(rows, cfg.chunk_limit)
        if rows == 0:
            raise InvalidSettings(f"The vector store {cfg.vector_store_path} has no chunks.")
        snapshot = {
            "vector_store_path": cfg.vector_store_path,
            "selection": {"rows": rows},
            "questions_per_chunk": cfg.questions_per_chunk,
            "llm_model": cfg.llm_model,
            "llm_base_url": cfg.llm_base_url,
            "generation_concurrency": cfg.generation_concurrency,
            "deep_memory_backend": cfg.deep_memory_backend,
            "embedding": cfg.embedding,
        }
        now = self.ctx.clock()
        run = TrainingRun(
            status=RunStatus.GENERATING.value,
            total_chunks=rows,
            processed_chunks=0,
            pair_count=0,
            settings=snapshot,
            created_at=now,
            updated_at=now,
            heartbeat_at=now,
            owner=self.ctx.owner,
        )
        try:
            with session_scope(self.ctx.sessions) as s:
                s.add(run)
                s.flush()
                return self._view(s, run.id)
        except IntegrityError:
            # Another process created a run between our check and our insert (one_open_run).
            blocker = self.blocking_run()
            if blocker is None:
                raise
            raise GenerationBlocked(blocker.id, blocker.status.value) from None

    # -- proceed / remove ----------------------------------------------------------------------

    def proceed(self, run_id: int) -> RunView:
        """FR-3/FR-4: a failed run goes back to its active status with its error cleared.

        A generation resume keeps what defines the data set (store, chunk selection, questions
        per chunk) from the run's snapshot but takes how to reach the LLM (model, URL,
        concurrency) from the current settings, so fixing a wrong model name and proceeding
        works."""
        self.recover_stale()
        with session_scope(self.ctx.sessions) as s:
            run = s.get(TrainingRun, run_id)
            if run is None:
                raise RunNotFound(run_id)
            old = RunStatus(run.status)
            if old not in FAILED:
                raise RuleViolation(
                    f"Run #{run_id} is {old.value}; only a generating_failed or training_failed "
                    "run can proceed."
                )
            new = RESUMES_TO[old]
            check_transition(old, new, run_id)
            snapshot = dict(run.settings or {})
            snapshot.pop("attach_job_id", None)  # Proceed re-submits; it does not re-attach
            if new is RunStatus.GENERATING:
                cfg = self.ctx.config
                snapshot.update(
                    llm_model=cfg.llm_model,
                    llm_base_url=cfg.llm_base_url,
                    generation_concurrency=cfg.generation_concurrency,
                )
            now = self.ctx.clock()
            done = s.execute(
                update(TrainingRun)
                .where(TrainingRun.id == run_id, TrainingRun.status == old.value)
                .values(
                    status=new.value,
                    error_message=None,
                    settings=snapshot,
                    heartbeat_at=now,
                    updated_at=now,
                    owner=self.ctx.owner,
                )
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            if not done:
                raise RuleViolation(f"Run #{run_id} changed meanwhile; look at it again.")
            return self._view(s, run_id)

    def remove(self, run_id: int) -> None:
        """FR-5: delete a failed run; its pairs go with it (ON DELETE CASCADE)."""
        with session_scope(self.ctx.sessions) as s:
            run = s.get(TrainingRun, run_id)
            if run is None:
                raise RunNotFound(run_id)
            if RunStatus(run.status) not in FAILED:
                raise RuleViolation(
                    f"Run #{run_id} is {run.status}; only a generating_failed or training_failed "
                    "run can be removed."
                )
            done = s.execute(
                delete(TrainingRun)
                .where(TrainingRun.id == run_id, TrainingRun.status.in_([f.value for f in FAILED]))
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            if not done:
                raise RuleViolation(f"Run #{run_id} changed meanwhile; look at it again.")

    # -- review --------------------------------------------------------------------------------

    def list_pairs(
        self, run_id: int, *, offset: int = 0, limit: int | None = None
    ) -> list[PairView]:
        with session_scope(self.ctx.sessions) as s:
            if s.get(TrainingRun, run_id) is None:
                raise RunNotFound(run_id)
            stmt = (
                select(TrainingPair)
                .where(TrainingPair.training_run_id == run_id)
                .order_by(TrainingPair.id)
                .offset(offset)
            )
            if limit is not None:
                stmt = stmt.limit(limit)
            return [
                PairView(
                    id=p.id,
                    training_run_id=p.training_run_id,
                    chunk_id=p.chunk_id,
                    question=p.question,
                    approved=p.approved,
                    created_at=p.created_at,
                    flags=p.flags,
                )
                for p in s.scalars(stmt)
            ]

    def chunk_texts(self, run_id: int, chunk_ids: Sequence[str]) -> dict[str, str]:
        """The texts of some chunks of a run (for review), read from the run's store in one
        batch."""
        run = self.get_run(run_id)
        snapshot = run.settings or {}
        wanted = set(chunk_ids)
        store = self.ctx.vector_store_factory(snapshot.get("vector_store_path"))
        try:
            stop = int(snapshot.get("selection", {}).get("rows") or store.row_count())
            ids = store.read_ids(min(stop, store.row_count()))
            rows = [i for i, cid in enumerate(ids) if cid in wanted]
            return dict(zip((ids[r] for r in rows), store.read_texts(rows), strict=True))
        finally:
            store.close()

    def _reviewable(self, s: Session, run_id: int) -> None:
        run = s.get(TrainingRun, run_id)
        if run is None:
            raise RunNotFound(run_id)
        if run.status != RunStatus.GENERATED:
            raise RuleViolation(
                f"Run #{run_id} is {run.status}; pairs can be reviewed once generation has "
                "finished (status generated)."
            )

    def set_approval(self, run_id: int, pair_ids: Sequence[int], approved: bool) -> int:
        """Approve or reject the given pairs of a generated run. Unknown ids are refused."""
        ids = sorted(set(pair_ids))
        with session_scope(self.ctx.sessions) as s:
            self._reviewable(s, run_id)
            found = set(
                s.scalars(
                    select(TrainingPair.id).where(
                        TrainingPair.training_run_id == run_id, TrainingPair.id.in_(ids)
                    )
                )
            )
            missing = [i for i in ids if i not in found]
            if missing:
                raise InvalidSettings(
                    f"Run #{run_id} has no pair(s) {', '.join(map(str, missing[:10]))}."
                )
            s.execute(
                update(TrainingPair)
                .where(TrainingPair.training_run_id == run_id, TrainingPair.id.in_(ids))
                .values(approved=approved)
                .execution_options(synchronize_session=False)
            )
            return len(ids)

    def approve_all(self, run_id: int, *, include_flagged: bool = False) -> int:
        """Approve every pair not reviewed yet — never one the admin rejected. Pairs the quality
        filters flagged (and so rejected) are approved only with `include_flagged`."""
        unreviewed = TrainingPair.approved.is_(None)
        flagged_only = TrainingPair.flags.is_not(None) & TrainingPair.approved.is_(False)
        with session_scope(self.ctx.sessions) as s:
            self._reviewable(s, run_id)
            return s.execute(
                update(TrainingPair)
                .where(
                    TrainingPair.training_run_id == run_id,
                    (unreviewed | flagged_only) if include_flagged else unreviewed,
                )
                .values(approved=True)
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]

    def review_counts(self, run_id: int) -> dict[str, int]:
        """approved / rejected / flagged / unreviewed pairs of a run, in one query."""
        p = TrainingPair
        with session_scope(self.ctx.sessions) as s:
            row = s.execute(
                select(
                    func.count().filter(p.approved.is_(True)),
                    func.count().filter(p.approved.is_(False)),
                    func.count().filter(p.flags.is_not(None)),
                    func.count().filter(p.approved.is_(None)),
                ).where(p.training_run_id == run_id)
            ).one()
        return dict(zip(("approved", "rejected", "flagged", "unreviewed"), row, strict=True))

    # -- training ------------------------------------------------------------------------------

    def start_training(self, run_id: int) -> RunView:
        """generated → training; needs at least one approved pair."""
        self._require_available()
        with session_scope(self.ctx.sessions) as s:
            view = self._view(s, run_id)
            if view.status in FAILED:
                raise RuleViolation(
                    f"Run #{run_id} is {view.status.value}: Proceed resumes it "
                    f"(dmdesk proceed {run_id})."
                )
            check_transition(view.status, RunStatus.TRAINING, run_id)
            if view.approved_count == 0:
                raise RuleViolation(
                    f"Run #{run_id} has no approved pair: approve pairs first "
                    f"(dmdesk review {run_id} --approve-all)."
                )
            now = self.ctx.clock()
            done = s.execute(
                update(TrainingRun)
                .where(TrainingRun.id == run_id, TrainingRun.status == RunStatus.GENERATED.value)
                .values(
                    status=RunStatus.TRAINING.value,
                    error_message=None,
                    heartbeat_at=now,
                    updated_at=now,
                    owner=self.ctx.owner,
                )
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            if not done:
                raise RuleViolation(f"Run #{run_id} changed meanwhile; look at it again.")
            return self._view(s, run_id)

    # -- jobs ----------------------------------------------------------------------------------

    def run_job(
        self,
        run_id: int,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> RunView:
        """Run the job of the run's active phase in this thread, until it ends; returns the run.

        The run must be owned by this context (it was just started or proceeded here)."""
        view = self.get_run(run_id)
        if view.status is RunStatus.GENERATING:
            from dmdesk.services.generation import GenerationJob

            return GenerationJob(self.ctx, run_id, progress, cancel).run()
        if view.status is RunStatus.TRAINING:
            from dmdesk.services.training import TrainingJob

            return TrainingJob(self.ctx, run_id, progress, cancel).run()
        raise RuleViolation(f"Run #{run_id} is {view.status.value}; there is no job to run.")
