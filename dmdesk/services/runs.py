"""TrainingRunService: every rule of ZIP-004/ZIP-005 about runs, in one place.

* FR-2: `start_generation` is refused while any run is not completed. The check names the
  oldest unfinished run and runs in the insert's transaction under the database's write lock;
  the `one_active_run` index (one working run at a time) backs it up between processes.
* FR-3/FR-4: `proceed` moves a failed run back to its active status and clears the error; the
  caller then runs the job for that phase (`dmdesk.jobs.runner.run_job`).
* FR-5: `remove` deletes a failed run; ON DELETE CASCADE removes its pairs.
* Stale runs (a process that died) become failed at start-up and before any new generation.

Every state change goes through `dmdesk.services.transitions.write_run`, a conditional UPDATE
(`WHERE id = ? AND status = ?`), so two processes acting on the same run cannot both succeed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dmdesk.db.models import TrainingPair, TrainingRun
from dmdesk.db.session import session_scope
from dmdesk.domain.errors import (
    GenerationBlocked,
    InvalidSettings,
    RuleViolation,
    RunNotFound,
)
from dmdesk.domain.models import PairView, RunView
from dmdesk.domain.snapshot import RunSnapshot, Selection
from dmdesk.domain.status import (
    ACTIVE,
    FAILED,
    FAILURE_OF,
    RESUMES_TO,
    RunStatus,
    check_transition,
)
from dmdesk.llm.pricing import budget_unpriced, cost_usd
from dmdesk.services import queries
from dmdesk.services.context import ServiceContext
from dmdesk.services.settings import availability, uses_local_generator
from dmdesk.services.transitions import insert_run, lock_runs, write_run
from dmdesk.vectorstore.service import count_chunks

log = logging.getLogger(__name__)


def _check_budget(cfg: Any) -> None:
    """A budget needs a price to be kept: refused before a run starts, not halfway."""
    if cfg.budget_usd is None or uses_local_generator(cfg):
        return

    if cost_usd(cfg.llm_model, 0, 0) is None:
        raise InvalidSettings(budget_unpriced(cfg.llm_model, cfg.budget_usd))


class TrainingRunService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    # -- reading -------------------------------------------------------------------------------

    def list_runs(self) -> list[RunView]:
        """All runs, newest first, with approved-pair counts: one query, whatever the count."""
        return queries.list_runs(self.ctx)

    def get_run(self, run_id: int) -> RunView:
        return queries.get_run(self.ctx, run_id)

    def _view(self, s: Session, run_id: int) -> RunView:
        return queries.view(s, self.ctx, run_id)

    def change_token(self) -> tuple[Any, ...]:
        """A cheap fingerprint of the runs table that changes whenever any process changes a
        run (every write sets `updated_at`; a review touches its run): one indexed query, for
        windows that watch the table."""
        with session_scope(self.ctx.sessions) as s:
            row = s.execute(
                select(func.count(), func.max(TrainingRun.updated_at), func.max(TrainingRun.id))
            ).one()
        return tuple(row)

    def _touch(self, s: Session, run_id: int) -> None:
        """Mark a run changed (its pairs were reviewed) so that watching windows reload it."""
        s.execute(
            update(TrainingRun)
            .where(TrainingRun.id == run_id)
            .values(updated_at=self.ctx.clock())
            .execution_options(synchronize_session=False)
        )

    def blocking_run(self) -> RunView | None:
        """The run that blocks a new generation (FR-2), if any."""
        with session_scope(self.ctx.sessions) as s:
            return self._blocking(s)

    def _blocking(self, s: Session) -> RunView | None:
        # The oldest unfinished run: the one to resolve first (a ZIP-004 database may hold
        # several failed runs; the admin resolves them in order).
        run_id = s.scalar(
            select(TrainingRun.id)
            .where(TrainingRun.status != RunStatus.COMPLETED.value)
            .order_by(TrainingRun.id)
            .limit(1)
        )
        return self._view(s, run_id) if run_id is not None else None

    # -- stale runs ----------------------------------------------------------------------------

    def recover_stale(self) -> list[RunView]:
        """Deal with every active run whose heartbeat is older than `stale_after_s` (its process
        died). A DeepLake Cloud training run with a job id keeps running remotely: it is
        re-attached — claimed by this process, flagged `attach_job_id` so the training job
        follows that job instead of re-submitting — and returned with status `training`; the
        caller must run its job (`dmdesk.app.start` hands it to a detached worker). A batch-mode
        generation with open LLM batches is re-attached the same way (status `generating`):
        its job waits for the batches it recorded (dmdesk.jobs.batch). Every other
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
            same_beat = (
                TrainingRun.heartbeat_at.is_(None)
                if beat is None
                else TrainingRun.heartbeat_at == beat
            )
            snapshot = settings or RunSnapshot()
            values: dict[str, Any] = {"owner": None, "updated_at": now}
            to: RunStatus | None
            if (
                status == RunStatus.TRAINING
                and job_id
                and snapshot.deep_memory_backend == "deeplake"
            ) or (status == RunStatus.GENERATING and snapshot.open_batches):
                to = None  # still working remotely (a job, batches): this process takes it over
                values |= {"owner": self.ctx.owner, "heartbeat_at": now}
                if status == RunStatus.TRAINING:
                    values["settings"] = snapshot.model_copy(update={"attach_job_id": job_id})
            else:
                when = beat.strftime("%Y-%m-%d %H:%M:%S UTC") if beat else "an unknown time"
                phase = "Generation" if status == RunStatus.GENERATING else "Training"
                to = FAILURE_OF[RunStatus(status)]
                values["error_message"] = (
                    f"{phase} was interrupted: the dmdesk process running it stopped responding "
                    f"(last heartbeat {when}). Proceed resumes it; Delete removes it."
                )
            with session_scope(self.ctx.sessions) as s:
                if write_run(
                    s, run_id, expect=RunStatus(status), to=to, where=(same_beat,), **values
                ):
                    if to is None and status == RunStatus.TRAINING:
                        log.warning("run %s: re-attached to DeepLake job %s", run_id, job_id)
                    elif to is None:
                        log.warning("run %s: re-attached to its open LLM batches", run_id)
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
        blocker = self.blocking_run()  # early and cheap; checked again under the lock below
        if blocker is not None:
            raise GenerationBlocked(blocker.id, blocker.status.value, blocker.approved_count)
        cfg = self.ctx.config
        _check_budget(cfg)
        store = self.ctx.vector_store_factory(cfg.vector_store_path)
        try:
            rows = store.row_count()
            if rows == 0:
                raise InvalidSettings(f"The vector store {cfg.vector_store_path} has no chunks.")
            store_rows: int | None = None
            if cfg.chunk_limit is not None and cfg.chunk_limit < rows:
                # A limited run says so: "40 of 1,234 chunks (chunk_limit)".
                store_rows, rows = rows, cfg.chunk_limit
            selection = Selection(
                rows=rows,
                chunks=count_chunks(store, rows),
                store_rows=store_rows,
                limited_by="chunk_limit" if store_rows is not None else None,
            )
        finally:
            store.close()
        snapshot = RunSnapshot.start(cfg, selection)
        now = self.ctx.clock()
        try:
            with session_scope(self.ctx.sessions) as s:
                # FR-2 in the insert's own transaction, under the database's write lock, so a
                # run that ended (or appeared) since the check above is seen; `one_active_run`
                # backs it up between processes.
                lock_runs(s)
                blocker = self._blocking(s)
                if blocker is not None:
                    raise GenerationBlocked(
                        blocker.id, blocker.status.value, blocker.approved_count
                    )
                run = insert_run(
                    s,
                    total_chunks=rows,
                    processed_chunks=0,
                    pair_count=0,
                    settings=snapshot,
                    created_at=now,
                    updated_at=now,
                    heartbeat_at=now,
                    owner=self.ctx.owner,
                )
                return self._view(s, run.id)
        except IntegrityError:
            # Another process's run is working (one_active_run).
            blocker = self.blocking_run()
            if blocker is None:
                raise
            raise GenerationBlocked(
                blocker.id, blocker.status.value, blocker.approved_count
            ) from None

    # -- proceed / remove ----------------------------------------------------------------------

    def proceed(self, run_id: int) -> RunView:
        """FR-3/FR-4: a failed run goes back to its active status with its error cleared.

        A generation resume keeps what defines the data set (store, chunk selection, questions
        per chunk) from the run's snapshot but takes how to reach the LLM (model, URL,
        concurrency) from the current settings, so fixing a wrong model name and proceeding
        works."""
        self.recover_stale()
        try:
            with session_scope(self.ctx.sessions) as s:
                return self._proceed(s, run_id)
        except IntegrityError:  # one_active_run: another run started working meanwhile
            working = self._working_run()
            raise RuleViolation(
                f"Run #{working.id if working else '?'} is already working; proceed with run "
                f"#{run_id} once it has finished."
            ) from None

    def _working_run(self) -> RunView | None:
        with session_scope(self.ctx.sessions) as s:
            run_id = s.scalar(
                select(TrainingRun.id).where(TrainingRun.status.in_([a.value for a in ACTIVE]))
            )
            return self._view(s, run_id) if run_id is not None else None

    def _proceed(self, s: Session, run_id: int) -> RunView:
        """Proceed obeys the rules of a start: the FR-6 gate, one working run at a time, and
        a training re-submission needs approved pairs."""
        view = self._view(s, run_id)
        old = view.status
        if old not in FAILED:
            raise RuleViolation(
                f"Run #{run_id} is {old.value}; only a generating_failed or training_failed "
                "run can proceed."
            )
        self._require_available()
        working = self._working_run()
        if working is not None:
            raise RuleViolation(
                f"Run #{working.id} is already working; proceed with run #{run_id} once it "
                "has finished."
            )
        new = RESUMES_TO[old]
        if new is RunStatus.TRAINING and view.approved_count == 0:
            raise RuleViolation(
                f"Run #{run_id} has no approved pair to train on: review its pairs first (approve "
                "some), then Proceed; or delete the run."
            )
        run = s.get(TrainingRun, run_id)
        assert run is not None
        # A run from a ZIP-004 database may have no snapshot: what it lacks is taken from the
        # current settings (the chunk selection from the store as it is now), and recorded.
        snapshot = (run.settings or RunSnapshot()).completed(self.ctx.config, self._select_all)
        # Proceed re-submits; it does not re-attach.
        snapshot = snapshot.model_copy(update={"attach_job_id": None})
        if new is RunStatus.GENERATING:
            _check_budget(self.ctx.config)
            snapshot = snapshot.reconnected(self.ctx.config)
        return self._claim(s, run_id, old, new, settings=snapshot)

    def _select_all(self, path: str | None) -> Selection:
        """Every chunk of the store as it is now (a legacy run's selection)."""
        store = self.ctx.vector_store_factory(path)
        try:
            rows = store.row_count()
            return Selection(rows=rows, chunks=count_chunks(store, rows))
        finally:
            store.close()

    def _claim(
        self, s: Session, run_id: int, old: RunStatus, new: RunStatus, **values: Any
    ) -> RunView:
        """Move a run into an active status owned by this process, its error cleared."""
        now = self.ctx.clock()
        done = write_run(
            s,
            run_id,
            expect=old,
            to=new,
            error_message=None,
            heartbeat_at=now,
            updated_at=now,
            owner=self.ctx.owner,
            **values,
        )
        if not done:
            raise RuleViolation(f"Run #{run_id} changed meanwhile; look at it again.")
        return self._view(s, run_id)

    def remove(self, run_id: int) -> None:
        """FR-5: delete a failed run; its pairs go with it (ON DELETE CASCADE).

        Also a `generated` run without any approved pair (our decision where the spec is silent):
        it cannot be trained and blocks every new generation (FR-2), so without this an admin who
        rejected every pair would be stuck. The condition is re-checked in the DELETE itself, so
        an approval racing the removal wins or loses as a whole."""
        has_approved = (
            select(TrainingPair.id)
            .where(TrainingPair.training_run_id == run_id, TrainingPair.approved.is_(True))
            .exists()
        )
        removable = TrainingRun.status.in_([f.value for f in FAILED]) | (
            (TrainingRun.status == RunStatus.GENERATED.value) & ~has_approved
        )
        with session_scope(self.ctx.sessions) as s:
            view = self._view(s, run_id)
            if not view.removable:
                why = (
                    f"it has {view.approved_count} approved pair(s): train it, or reject them first"
                    if view.status is RunStatus.GENERATED
                    else "only a failed run, or a generated run without approved pairs, can be "
                    "removed"
                )
                raise RuleViolation(f"Run #{run_id} is {view.status.value}; {why}.")
            done = s.execute(
                delete(TrainingRun)
                .where(TrainingRun.id == run_id, removable)
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            if not done:
                raise RuleViolation(f"Run #{run_id} changed meanwhile; look at it again.")
        log.info("run %s: removed with its pairs (was %s)", run_id, view.status.value)

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
        snapshot = run.settings or RunSnapshot()
        wanted = set(chunk_ids)
        store = self.ctx.vector_store_factory(snapshot.vector_store_path)
        try:
            stop = snapshot.selection.rows if snapshot.selection else store.row_count()
            ids = store.read_ids(min(stop, store.row_count()))
            rows = [i for i, cid in enumerate(ids) if cid in wanted]
            return dict(zip((ids[r] for r in rows), store.read_texts(rows), strict=True))
        finally:
            store.close()

    def _reviewable(self, s: Session, run_id: int) -> None:
        run = s.get(TrainingRun, run_id)
        if run is None:
            raise RunNotFound(run_id)
        # A training_failed run is reviewable too: its next Proceed trains on what is approved
        # then (a run from a ZIP-004 database may arrive there with no pair approved).
        if run.status not in (RunStatus.GENERATED, RunStatus.TRAINING_FAILED):
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
            self._touch(s, run_id)
            return len(ids)

    def approve_all(
        self, run_id: int, *, include_flagged: bool = False, force: bool = False
    ) -> int:
        """Approve every pair not reviewed yet — never one the admin rejected. Pairs the quality
        filters flagged (and so rejected) are approved only with `include_flagged`; `force`
        approves every pair of the run, rejections included."""
        unreviewed = TrainingPair.approved.is_(None)
        flagged_only = TrainingPair.flags.is_not(None) & TrainingPair.approved.is_(False)
        which = [TrainingPair.training_run_id == run_id]
        if force:
            which.append(TrainingPair.approved.is_not(True))
        else:
            which.append((unreviewed | flagged_only) if include_flagged else unreviewed)
        with session_scope(self.ctx.sessions) as s:
            self._reviewable(s, run_id)
            n = int(
                s.execute(
                    update(TrainingPair)
                    .where(*which)
                    .values(approved=True)
                    .execution_options(synchronize_session=False)
                ).rowcount  # type: ignore[attr-defined]
            )
            self._touch(s, run_id)
            return n

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
                raise RuleViolation(f"Run #{run_id} is {view.status.value}: Proceed resumes it.")
            check_transition(view.status, RunStatus.TRAINING, run_id)
            if view.approved_count == 0:
                raise RuleViolation(
                    f"Run #{run_id} has no approved pair: review its pairs and approve some first."
                )
            return self._claim(s, run_id, RunStatus.GENERATED, RunStatus.TRAINING)
