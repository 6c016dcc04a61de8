"""Run rules: FR-2 blocking (Scenario 6), FR-5 remove (Scenario 5), FR-4 training proceed
(Scenario 2/4) with a test backend, review, stale-run recovery, FR-6 gate, and query counts."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event

from dmdesk.deepmemory.base import TrainingRequest
from dmdesk.domain.errors import (
    GenerationBlocked,
    InvalidSettings,
    InvalidTransition,
    RuleViolation,
    RunNotFound,
    TrainingError,
)
from dmdesk.domain.status import RunStatus
from dmdesk.jobs.runner import run_job
from dmdesk.services.context import ServiceContext
from dmdesk.services.runs import TrainingRunService
from tests.conftest import chunk_ids
from tests.helpers import insert_pairs, insert_run, long_ago, pair_count

NON_COMPLETED = ["generating", "generated", "training", "generating_failed", "training_failed"]


# -- FR-2 / Scenario 6 -------------------------------------------------------------------------


@pytest.mark.parametrize("status", NON_COMPLETED)
def test_fr2_scenario6_generation_is_blocked_by_every_non_completed_status(
    runs: TrainingRunService, ctx: ServiceContext, status: str
) -> None:
    run_id = insert_run(ctx, status, owner="another-process")
    with pytest.raises(GenerationBlocked) as err:
        runs.start_generation()
    assert err.value.run_id == run_id and err.value.status == status
    assert f"Run #{run_id} is {status}" in err.value.message
    assert "completed or removed" in err.value.message
    assert [r.id for r in runs.list_runs()] == [run_id]  # nothing was created


def test_fr2_completed_runs_do_not_block(runs: TrainingRunService, ctx: ServiceContext) -> None:
    insert_run(ctx, "completed")
    insert_run(ctx, "completed")
    assert runs.start_generation().status is RunStatus.GENERATING


def test_scenario6_generation_allowed_again_once_the_failed_run_is_removed(
    runs: TrainingRunService, ctx: ServiceContext
) -> None:
    failed = insert_run(ctx, "generating_failed")
    with pytest.raises(GenerationBlocked):
        runs.start_generation()
    runs.remove(failed)
    assert runs.blocking_run() is None
    assert runs.start_generation().status is RunStatus.GENERATING


def test_two_services_racing_create_exactly_one_run(
    make_ctx: Callable[..., ServiceContext], store200, database_url: str
) -> None:
    """Both pass the Python check; the database index lets only one insert through (on SQLite
    and on PostgreSQL)."""
    a = make_ctx(vector_store_path=store200, database_url=database_url)
    b = make_ctx(vector_store_path=store200, database_url=database_url)
    sa, sb = TrainingRunService(a), TrainingRunService(b)
    sa.blocking_run = sb.blocking_run = lambda: None  # type: ignore[method-assign]
    results: list[Any] = []
    barrier = threading.Barrier(2)

    def start(svc: TrainingRunService) -> None:
        barrier.wait()
        try:
            results.append(svc.start_generation())
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in (sa, sb)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(TrainingRunService(a).list_runs()) == 1
    assert sum(isinstance(r, Exception) for r in results) == 1


def test_generation_refused_when_deep_memory_is_unavailable(
    make_ctx: Callable[..., ServiceContext], store200
) -> None:
    ctx = make_ctx(vector_store_path=store200, deep_memory_backend="deeplake")
    with pytest.raises(RuleViolation, match="only available with DeepLake Cloud"):
        TrainingRunService(ctx).start_generation()


# -- FR-5 / Scenario 5 -------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["generating_failed", "training_failed"])
def test_fr5_scenario5_remove_deletes_the_failed_run_and_every_pair(
    runs: TrainingRunService, ctx: ServiceContext, status: str
) -> None:
    keep = insert_run(ctx, "completed")
    insert_pairs(ctx, keep, chunk_ids(5))
    failed = insert_run(ctx, status)
    insert_pairs(ctx, failed, chunk_ids(30))
    runs.remove(failed)
    with pytest.raises(RunNotFound):
        runs.get_run(failed)
    assert pair_count(ctx, failed) == 0  # SC-4: nothing orphaned
    assert pair_count(ctx) == 5
    assert [r.id for r in runs.list_runs()] == [keep]


@pytest.mark.parametrize("status", ["generating", "generated", "training", "completed"])
def test_fr5_4_only_failed_runs_can_be_removed(
    runs: TrainingRunService, ctx: ServiceContext, status: str
) -> None:
    # A generated run is removable only without approved pairs (next test): give it one.
    run_id = insert_run(ctx, status)
    insert_pairs(ctx, run_id, chunk_ids(3), approved=True if status == "generated" else None)
    with pytest.raises(RuleViolation, match=r"can be removed|approved pair"):
        runs.remove(run_id)
    assert runs.get_run(run_id).status == status
    assert pair_count(ctx, run_id) == 3


@pytest.mark.parametrize("approved", [False, None])
def test_a_generated_run_without_approved_pairs_can_be_removed(
    runs: TrainingRunService, ctx: ServiceContext, approved: bool | None
) -> None:
    """Issue 16: after rejecting every pair, the run could be neither trained nor removed, and
    it blocked every new generation. Now Delete is its way out (our decision; README)."""
    run_id = insert_run(ctx, "generated")
    insert_pairs(ctx, run_id, chunk_ids(3), approved=approved)
    assert runs.get_run(run_id).removable
    runs.remove(run_id)
    with pytest.raises(RunNotFound):
        runs.get_run(run_id)
    assert pair_count(ctx, run_id) == 0
    assert runs.blocking_run() is None


def test_remove_and_proceed_of_an_unknown_run(runs: TrainingRunService) -> None:
    with pytest.raises(RunNotFound):
        runs.remove(999)
    with pytest.raises(RunNotFound):
        runs.proceed(999)


# -- proceed rules -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["generating", "generated", "training", "completed"])
def test_proceed_is_refused_for_runs_that_did_not_fail(
    runs: TrainingRunService, ctx: ServiceContext, status: str
) -> None:
    run_id = insert_run(ctx, status)
    with pytest.raises(RuleViolation):
        runs.proceed(run_id)
    assert runs.get_run(run_id).status == status


@pytest.mark.parametrize(
    ("failed", "resumed"),
    [("generating_failed", "generating"), ("training_failed", "training")],
)
def test_fr3_fr4_proceed_resets_status_and_clears_the_error(
    runs: TrainingRunService, ctx: ServiceContext, failed: str, resumed: str
) -> None:
    run_id = insert_run(ctx, failed, processed=51, total=80, job_id="job-1")
    insert_pairs(ctx, run_id, chunk_ids(3), approved=True)  # training re-submits these
    from sqlalchemy import update

    from dmdesk.db.models import TrainingRun

    with ctx.engine.begin() as c:
        c.execute(update(TrainingRun).values(error_message="boom"))
    run = runs.proceed(run_id)
    assert run.status == resumed and run.error_message is None
    assert (run.processed_chunks, run.total_chunks, run.deeplake_job_id) == (51, 80, "job-1")


# -- training (FR-4, Scenario 2/4) with a test backend -----------------------------------------


class ScriptedBackend:
    """A test Deep Memory backend: records each request, fails on the calls it is told to."""

    name = "scripted"

    def __init__(self, fail_on: set[int]) -> None:
        self.fail_on = fail_on
        self.requests: list[TrainingRequest] = []

    def train(self, request: TrainingRequest, *, on_job_id, progress, cancel) -> dict:
        self.requests.append(request)
        n = len(self.requests)
        on_job_id(f"job-{n}")
        progress(0.5, "half way")
        if n in self.fail_on:
            raise TrainingError("DeepLake said no (HTTP 502)", metrics={"epochs_done": 3})
        return {"recall@10": {"before": 0.5, "after": 0.8}}


def generated_run(runs: TrainingRunService, approve: list[str] | None = None) -> int:
    run = run_job(runs.ctx, runs.start_generation().id)
    assert run.status is RunStatus.GENERATED
    pairs = runs.list_pairs(run.id)
    chosen = [p.id for p in pairs if approve is None or p.chunk_id in approve]
    runs.set_approval(run.id, chosen, True)
    return run.id


def test_scenario2_training_failure_keeps_job_id_and_partial_metrics(
    runs: TrainingRunService, ctx: ServiceContext
) -> None:
    backend = ScriptedBackend(fail_on={1})
    ctx.backend_factory = lambda name, cfg: backend
    run_id = generated_run(runs)
    runs.start_training(run_id)
    run = run_job(runs.ctx, run_id)
    assert run.status is RunStatus.TRAINING_FAILED
    assert run.deeplake_job_id == "job-1"
    assert run.metrics == {"epochs_done": 3}
    assert "HTTP 502" in run.error_message
    assert run.processed_chunks == 200 and run.pair_count == 200


def test_fr4_scenario4_proceed_resubmits_the_same_approved_pairs_and_completes(
    runs: TrainingRunService, ctx: ServiceContext, llm_server
) -> None:
    backend = ScriptedBackend(fail_on={1})
    ctx.backend_factory = lambda name, cfg: backend
    run_id = generated_run(runs, approve=chunk_ids(200)[:40])
    runs.start_training(run_id)
    assert run_job(runs.ctx, run_id).status is RunStatus.TRAINING_FAILED
    asked_before = llm_server.stats.requests

    resumed = runs.proceed(run_id)
    assert resumed.status is RunStatus.TRAINING and resumed.error_message is None
    done = run_job(runs.ctx, run_id)
    assert done.status is RunStatus.COMPLETED
    assert done.metrics["recall@10"] == {"before": 0.5, "after": 0.8}
    # a backend that reports no held-out ranks proves nothing: its model is not used
    assert done.metrics["activation"]["activated"] is False and not done.model_active
    assert done.deeplake_job_id == "job-2"
    first, second = backend.requests
    assert len(first.queries) == 40
    assert (first.queries, first.relevance) == (second.queries, second.relevance)
    assert all(rel[0][0] in chunk_ids(200)[:40] for rel in second.relevance)
    assert llm_server.stats.requests == asked_before  # SC-3: nothing regenerated


def test_fr4_6_a_failed_training_retry_updates_the_error(
    runs: TrainingRunService, ctx: ServiceContext
) -> None:
    backend = ScriptedBackend(fail_on={1, 2})
    ctx.backend_factory = lambda name, cfg: backend
    run_id = generated_run(runs)
    runs.start_training(run_id)
    run_job(runs.ctx, run_id)
    runs.proceed(run_id)
    again = run_job(runs.ctx, run_id)
    assert again.status is RunStatus.TRAINING_FAILED and again.deeplake_job_id == "job-2"


def test_training_needs_a_generated_run_with_approved_pairs(
    runs: TrainingRunService, ctx: ServiceContext
) -> None:
    run = run_job(runs.ctx, runs.start_generation().id)
    with pytest.raises(RuleViolation, match="no approved pair"):
        runs.start_training(run.id)
    other = insert_run(ctx, "completed")
    with pytest.raises(InvalidTransition):
        runs.start_training(other)


def test_review_approve_reject_and_approve_all(runs: TrainingRunService, ctx) -> None:
    run = run_job(runs.ctx, runs.start_generation().id)
    pairs = runs.list_pairs(run.id)
    runs.set_approval(run.id, [pairs[0].id, pairs[1].id], True)
    runs.set_approval(run.id, [pairs[1].id], False)
    got = {p.id: p.approved for p in runs.list_pairs(run.id)}
    assert got[pairs[0].id] is True and got[pairs[1].id] is False and got[pairs[2].id] is None
    assert runs.get_run(run.id).approved_count == 1
    with pytest.raises(InvalidSettings, match="no pair"):
        runs.set_approval(run.id, [10_000_000], True)
    # "Approve all" takes the 198 pairs not reviewed yet; the admin's rejection stands
    assert runs.approve_all(run.id) == 198
    assert runs.get_run(run.id).approved_count == 199
    assert {p.id: p.approved for p in runs.list_pairs(run.id)}[pairs[1].id] is False


def test_review_is_refused_while_generating(runs: TrainingRunService, ctx) -> None:
    run_id = insert_run(ctx, "generating_failed")
    insert_pairs(ctx, run_id, chunk_ids(2))
    with pytest.raises(RuleViolation, match="once generation has finished"):
        runs.approve_all(run_id)


# -- stale runs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("active", "failed"),
    [("generating", "generating_failed"), ("training", "training_failed")],
)
def test_stale_runs_become_failed_with_an_interrupted_message(
    runs: TrainingRunService, ctx: ServiceContext, active: str, failed: str
) -> None:
    run_id = insert_run(ctx, active, heartbeat=long_ago(120), owner="dead:1:x", processed=12)
    (recovered,) = runs.recover_stale()
    assert recovered.id == run_id and recovered.status == failed
    assert "interrupted" in recovered.error_message
    assert recovered.processed_chunks == 12


def test_a_fresh_heartbeat_is_not_stale(runs: TrainingRunService, ctx: ServiceContext) -> None:
    run_id = insert_run(ctx, "generating", heartbeat=long_ago(5), owner="alive:1:x")
    assert runs.recover_stale() == []
    assert runs.get_run(run_id).status is RunStatus.GENERATING


def test_start_generation_recovers_stale_runs_first(
    runs: TrainingRunService, ctx: ServiceContext
) -> None:
    run_id = insert_run(ctx, "generating", heartbeat=long_ago(600))
    with pytest.raises(GenerationBlocked) as err:
        runs.start_generation()
    assert err.value.status == "generating_failed" and err.value.run_id == run_id


# -- performance shape -------------------------------------------------------------------------


def test_list_runs_is_one_query_whatever_the_number_of_runs(
    runs: TrainingRunService, ctx: ServiceContext
) -> None:
    for _ in range(30):
        rid = insert_run(ctx, "completed")
        insert_pairs(ctx, rid, chunk_ids(3), approved=True)
    statements: list[str] = []
    listener = lambda *a: statements.append(a[2])  # noqa: E731
    event.listen(ctx.engine, "before_cursor_execute", listener)
    try:
        listed = runs.list_runs()
    finally:
        event.remove(ctx.engine, "before_cursor_execute", listener)
    assert len(listed) == 30 and all(r.approved_count == 3 for r in listed)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1


# -- issue 12: proceed obeys the rules of a start; several failed runs -------------------------


def test_proceed_obeys_the_fr6_gate(make_ctx: Callable[..., ServiceContext], store200) -> None:
    ctx = make_ctx(vector_store_path=store200, deep_memory_backend="deeplake")
    run_id = insert_run(ctx, "generating_failed")
    with pytest.raises(RuleViolation, match="only available with DeepLake Cloud"):
        TrainingRunService(ctx).proceed(run_id)
    assert TrainingRunService(ctx).get_run(run_id).status is RunStatus.GENERATING_FAILED


def test_proceed_of_a_training_failed_run_without_approved_pairs_says_to_review_first(
    runs: TrainingRunService, ctx: ServiceContext
) -> None:
    run_id = insert_run(ctx, "training_failed")
    insert_pairs(ctx, run_id, chunk_ids(4))
    with pytest.raises(RuleViolation, match="review its pairs first"):
        runs.proceed(run_id)
    assert runs.approve_all(run_id) == 4  # a training_failed run can be reviewed
    assert runs.proceed(run_id).status is RunStatus.TRAINING


def test_several_failed_runs_are_resolved_one_by_one(
    runs: TrainingRunService, ctx: ServiceContext
) -> None:
    """An upgraded ZIP-004 database: Generate names the oldest unfinished run until none is
    left; a second Proceed while one run works is refused, naming it."""
    first = insert_run(ctx, "generating_failed")
    second = insert_run(ctx, "training_failed")
    insert_pairs(ctx, second, chunk_ids(3), approved=True)
    with pytest.raises(GenerationBlocked) as err:
        runs.start_generation()
    assert err.value.run_id == first
    assert runs.proceed(second).status is RunStatus.TRAINING
    with pytest.raises(RuleViolation, match=f"Run #{second} is already working"):
        runs.proceed(first)
    runs.remove(first)
    with pytest.raises(GenerationBlocked) as err:
        runs.start_generation()
    assert err.value.run_id == second


def test_a_racing_proceed_is_refused_by_the_database(
    runs: TrainingRunService, ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even when the service's own check is raced (here: skipped), `one_active_run` refuses a
    second working run and the admin reads which run works."""
    working = insert_run(ctx, "generating", owner="another-process", heartbeat=None)
    failed = insert_run(ctx, "generating_failed")
    monkeypatch.setattr(TrainingRunService, "recover_stale", lambda self: [])
    calls = iter([None])
    real = TrainingRunService._working_run
    monkeypatch.setattr(
        TrainingRunService, "_working_run", lambda self: next(calls, None) or real(self)
    )
    with pytest.raises(RuleViolation, match=f"Run #{working} is already working"):
        runs.proceed(failed)
    assert runs.get_run(failed).status is RunStatus.GENERATING_FAILED
