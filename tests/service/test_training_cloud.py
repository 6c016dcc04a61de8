"""DeepLake Cloud training through deeplake 3.9's *real* code.

`VectorStore("hub://org/kb")`, `DeepMemory.train/cancel`, `DeepMemoryBackendClient` and
`VectorStore.search(deep_memory=...)` all run as shipped; only their HTTP is answered, by
`dmdesk.testing.activeloop_server` on 127.0.0.1 (response shapes from deeplake's own
`client/test_client.py`). The store's data lives in a local folder the fake backend names.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dmdesk.domain.status import RunStatus
from dmdesk.jobs.runner import run_job
from dmdesk.services.context import ServiceContext
from dmdesk.services.runs import TrainingRunService
from dmdesk.testing.activeloop_server import ActiveloopServer
from tests.conftest import chunk_ids, chunk_texts
from tests.helpers import insert_pairs, insert_run, long_ago

N_CHUNKS = 60
APPROVED = 50


@pytest.fixture
def activeloop(tmp_path, monkeypatch) -> Iterator[ActiveloopServer]:
    with ActiveloopServer(tmp_path / "cloud") as server:
        monkeypatch.setenv("DMDESK_ACTIVELOOP_URL", server.url)
        monkeypatch.setenv("ACTIVELOOP_TOKEN", "tok-test-1234")
        server.create_store("kb", chunk_ids(N_CHUNKS), chunk_texts(N_CHUNKS))
        yield server


Cloud = tuple[ServiceContext, TrainingRunService, int, ActiveloopServer]


@pytest.fixture
def cloud(make_ctx: Callable[..., ServiceContext], activeloop: ActiveloopServer) -> Cloud:
    """A generated run on hub://org/kb with 50 approved and 10 rejected pairs; the embedding is
    the test LLM server's (64-d, like the store's)."""
    ctx = make_ctx(
        vector_store_path="hub://org/kb",
        deep_memory_backend="deeplake",
        embedding="openai:test-embedding",
        cloud_poll_interval_s=0.02,
        cloud_patience_s=1.0,
    )
    run_id = insert_run(ctx, "generated", total=N_CHUNKS)
    insert_pairs(ctx, run_id, chunk_ids(APPROVED), approved=True)
    insert_pairs(ctx, run_id, chunk_ids(N_CHUNKS)[APPROVED:], approved=False)
    return ctx, TrainingRunService(ctx), run_id, activeloop


def train_requests(server: ActiveloopServer) -> list[Any]:
    return server.calls("POST", "/api/deepmemory/v1/train")


def queries_dataset(server: ActiveloopServer) -> Any:
    from dmdesk.vectorstore._deeplake import import_deeplake

    return import_deeplake().load(
        str(server.dataset_dir("org", "kb_queries")), read_only=True, verbose=False
    )


def test_a_cloud_run_sends_the_approved_pairs_and_completes_with_metrics(cloud) -> None:
    _ctx, runs, run_id, server = cloud
    runs.start_training(run_id)
    run = run_job(runs.ctx, run_id)
    assert run.status is RunStatus.COMPLETED, run.error_message
    (body,) = train_requests(server)
    assert body == {"corpus_dataset": "hub://org/kb", "query_dataset": "hub://org/kb_queries"}
    assert run.deeplake_job_id == "job-1"
    # deeplake wrote the queries dataset with our embeddings and integer relevance: 80 % of the
    # 50 approved pairs; rejected pairs are never sent.
    qds = queries_dataset(server)
    assert len(qds["text"]) == 40
    relevance = [m["relevance"] for m in qds["metadata"].data()["value"]]
    assert all(len(r) == 1 and r[0][1] == 1 and isinstance(r[0][1], int) for r in relevance)
    assert {r[0][0] for r in relevance} <= set(chunk_ids(APPROVED))
    assert qds["embedding"].numpy().shape == (40, 64)
    # evaluated through the store's own search, without and with Deep Memory
    assert run.metrics["heldout_pairs"] == 10
    assert run.metrics["before"]["queries"] == 10 and "mrr" in run.metrics["after"]
    queries = [b["query"] for b in server.calls("POST", "/api/query/dataset/org/kb")]
    assert sum("deepmemory_distance" in q for q in queries) == 10
    assert sum("COSINE_SIMILARITY" in q for q in queries) == 10
    assert run.metrics["job"]["progress"]["best_recall@10"] == "85.5% (+2.6)%"


def test_a_cloud_job_that_fails_ends_training_failed_with_job_id_kept(cloud) -> None:
    _ctx, runs, run_id, server = cloud
    server.job_scripts = [["pending", "training", "failed"]]
    runs.start_training(run_id)
    run = run_job(runs.ctx, run_id)
    assert run.status is RunStatus.TRAINING_FAILED
    assert run.deeplake_job_id == "job-1"
    assert "list indices must be integers" in run.error_message
    assert run.metrics["job"]["status"] == "failed"  # partial metrics kept


def test_proceed_after_a_failed_job_submits_the_same_pairs_again(cloud) -> None:
    _ctx, runs, run_id, server = cloud
    server.job_scripts = [["failed"], ["training", "completed"]]
    runs.start_training(run_id)
    assert run_job(runs.ctx, run_id).status is RunStatus.TRAINING_FAILED
    first = queries_dataset(server)["text"].data()["value"]
    runs.proceed(run_id)
    run = run_job(runs.ctx, run_id)
    assert run.status is RunStatus.COMPLETED and run.deeplake_job_id == "job-2"
    assert len(train_requests(server)) == 2
    assert queries_dataset(server)["text"].data()["value"] == first


def test_proceed_while_the_job_still_trains_follows_it_without_resubmitting(cloud) -> None:
    """Stop was refused by DeepLake: the run says so, and Proceed re-attaches."""
    _ctx, runs, run_id, server = cloud
    server.job_scripts = [["training"] * 40 + ["completed"]]
    cancel = threading.Event()
    runs.start_training(run_id)

    def stop_soon(update) -> None:
        if "training" in update.message:
            cancel.set()

    run = run_job(runs.ctx, run_id, stop_soon, cancel)
    assert run.status is RunStatus.TRAINING_FAILED
    assert "refused to cancel" in run.error_message
    assert "still be training remotely" in run.error_message
    assert server.calls("POST", "/api/deepmemory/v1/jobs/job-1/cancel")
    runs.proceed(run_id)
    run = run_job(runs.ctx, run_id)
    assert run.status is RunStatus.COMPLETED, run.error_message
    assert len(train_requests(server)) == 1 and run.deeplake_job_id == "job-1"


def test_stop_of_a_pending_job_cancels_it(cloud) -> None:
    _ctx, runs, run_id, server = cloud
    server.job_scripts = [["pending"] * 1000]
    cancel = threading.Event()
    runs.start_training(run_id)
    run = run_job(
        runs.ctx, run_id, lambda u: cancel.set() if "pending" in u.message else None, cancel
    )
    assert run.status is RunStatus.TRAINING_FAILED
    assert "was cancelled" in run.error_message and run.deeplake_job_id == "job-1"
    # Proceed on a cancelled job submits again
    runs.proceed(run_id)
    assert run_job(runs.ctx, run_id).status is RunStatus.COMPLETED
    assert len(train_requests(server)) == 2


def test_an_outage_mid_poll_fails_the_run_after_the_patience(cloud) -> None:
    _ctx, runs, run_id, server = cloud
    server.job_scripts = [["training"] * 1000]
    runs.start_training(run_id)

    def cut(update) -> None:
        if "training" in update.message:
            server.outage = True

    started = time.monotonic()
    run = run_job(runs.ctx, run_id, cut)
    assert time.monotonic() - started < 30
    assert run.status is RunStatus.TRAINING_FAILED
    assert "unreachable since" in run.error_message and run.deeplake_job_id == "job-1"
    # back online, Proceed follows the same job: nothing re-submitted
    server.outage = False
    server.jobs["job-1"]["script"] = ["completed"]
    runs.proceed(run_id)
    run = run_job(runs.ctx, run_id)
    assert run.status is RunStatus.COMPLETED and len(train_requests(server)) == 1


def test_stop_takes_effect_within_2_s_while_deeplake_is_unreachable(cloud) -> None:
    ctx, runs, run_id, server = cloud
    ctx.config.cloud_patience_s = 600  # only Stop can end it
    server.job_scripts = [["training"] * 1000]
    cancel = threading.Event()
    stopped_at: list[float] = []
    runs.start_training(run_id)

    def on_progress(update) -> None:
        if "training" in update.message:
            server.outage = True
        if "unreachable" in update.message and not cancel.is_set():
            stopped_at.append(time.monotonic())
            cancel.set()

    run = run_job(runs.ctx, run_id, on_progress, cancel)
    assert time.monotonic() - stopped_at[0] < 2.0
    assert run.status is RunStatus.TRAINING_FAILED
    assert "could not be reached to cancel" in run.error_message


@pytest.mark.parametrize(
    ("route", "status", "phrase"),
    [
        ("/api/deepmemory/v1/jobs", 401, "refused the Activeloop token (401)"),
        ("/api/deepmemory/v1/jobs", 403, "no permission for hub://org/kb (403)"),
        ("/api/deepmemory/v1/jobs", 404, "no training job job-1 any more (404)"),
    ],
)
def test_errors_while_following_are_named(cloud, route, status, phrase) -> None:
    _ctx, runs, run_id, server = cloud
    runs.start_training(run_id)

    def refuse(update) -> None:
        if "Submitting" not in update.message:
            server.fail[route] = status

    run = run_job(runs.ctx, run_id, refuse)
    assert run.status is RunStatus.TRAINING_FAILED
    assert phrase in run.error_message, run.error_message
    assert "tok-test-1234" not in run.error_message


def test_a_5xx_while_following_is_retried_not_fatal(cloud) -> None:
    _ctx, runs, run_id, server = cloud
    server.fail["/api/deepmemory/v1/jobs"] = 503
    runs.start_training(run_id)

    def heal(update) -> None:
        if "unreachable" in update.message:
            server.fail.clear()

    run = run_job(runs.ctx, run_id, heal)
    assert run.status is RunStatus.COMPLETED, run.error_message


def test_a_5xx_on_the_access_check_is_not_called_no_access(cloud) -> None:
    _ctx, runs, run_id, server = cloud
    server.fail["/api/organizations/org/features/deepmemory"] = 500
    runs.start_training(run_id)
    run = run_job(runs.ctx, run_id)
    assert run.status is RunStatus.TRAINING_FAILED
    assert "service error" in run.error_message and "no access" not in run.error_message
    assert train_requests(server) == []


def test_no_deep_memory_access_is_explained(cloud) -> None:
    _ctx, runs, run_id, server = cloud
    server.deep_memory_available = False
    runs.start_training(run_id)
    run = run_job(runs.ctx, run_id)
    assert run.status is RunStatus.TRAINING_FAILED
    assert "no access to Deep Memory" in run.error_message
    assert run.deeplake_job_id is None and train_requests(server) == []


def test_a_bad_token_at_submission_is_named(cloud) -> None:
    _ctx, runs, run_id, server = cloud
    server.fail["/api/deepmemory/v1/train"] = 401
    runs.start_training(run_id)
    run = run_job(runs.ctx, run_id)
    assert run.status is RunStatus.TRAINING_FAILED
    assert "refused the Activeloop token (401)" in run.error_message


def test_an_unknown_state_ends_after_the_patience_naming_it(cloud) -> None:
    _ctx, runs, run_id, server = cloud
    server.job_scripts = [["warming-up"] * 1000]
    runs.start_training(run_id)
    run = run_job(runs.ctx, run_id)
    assert run.status is RunStatus.TRAINING_FAILED
    assert "'warming-up'" in run.error_message and "does not know" in run.error_message


def test_evaluation_failure_then_proceed_evaluates_without_training_again(cloud) -> None:
    _ctx, runs, run_id, server = cloud
    server.fail["/api/query/dataset"] = 500
    runs.start_training(run_id)
    run = run_job(runs.ctx, run_id)
    assert run.status is RunStatus.TRAINING_FAILED
    assert "completed but its evaluation failed" in run.error_message
    server.fail.clear()
    runs.proceed(run_id)
    run = run_job(runs.ctx, run_id)
    assert run.status is RunStatus.COMPLETED, run.error_message
    assert len(train_requests(server)) == 1
    assert run.metrics["after"]["queries"] == 10


def test_a_stale_cloud_run_is_reattached_and_sends_no_train_request(cloud) -> None:
    """Its process was killed while DeepLake trained: the job is followed again."""
    from sqlalchemy import update

    from dmdesk.db.models import TrainingRun

    ctx, runs, run_id, server = cloud
    runs.start_training(run_id)
    run_job(runs.ctx, run_id)  # job-1 exists on the server
    server.jobs["job-1"]["script"] = ["training", "completed"]
    with ctx.engine.begin() as c:
        c.execute(
            update(TrainingRun).values(
                status="training", heartbeat_at=long_ago(600), owner="dead:1:x", metrics=None
            )
        )
    (recovered,) = runs.recover_stale()
    assert recovered.status is RunStatus.TRAINING
    run = run_job(runs.ctx, run_id)
    assert run.status is RunStatus.COMPLETED and run.deeplake_job_id == "job-1"
    assert len(train_requests(server)) == 1


def test_cloud_search_uses_deep_memory_only_for_a_model_that_passed_or_was_chosen(
    cloud,
) -> None:
    """The stand-in's Deep Memory changes nothing, so the guard measures no gain: dmdesk's own
    search keeps plain search until the admin chooses the model."""
    from dmdesk.domain.errors import RuleViolation
    from dmdesk.services import activation
    from dmdesk.services.retrieval import search

    ctx, runs, run_id, server = cloud
    runs.start_training(run_id)
    run = run_job(runs.ctx, run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.metrics["activation"]["activated"] is False and not run.model_active
    assert run.metrics["activation"]["baseline"] == "no Deep Memory"
    with pytest.raises(RuleViolation, match="No Deep Memory is active"):
        search(ctx, "topic number 7 in detail", k=3, deep_memory=True)
    activation.activate(ctx, run)
    before = len(server.calls("POST", "/api/query/dataset/org/kb"))
    hits = search(ctx, "topic number 7 in detail", k=3, deep_memory=True)
    assert len(hits) == 3 and all(h.id.startswith("chunk-") for h in hits)
    (query,) = [b["query"] for b in server.calls("POST", "/api/query/dataset/org/kb")[before:]]
    assert "deepmemory_distance" in query


def test_a_stale_local_training_run_is_failed_not_reattached(make_ctx, store200) -> None:
    ctx = make_ctx(vector_store_path=store200)
    run_id = insert_run(ctx, "training", heartbeat=long_ago(600), job_id=None)
    (recovered,) = TrainingRunService(ctx).recover_stale()
    assert recovered.id == run_id and recovered.status is RunStatus.TRAINING_FAILED


def test_a_job_stuck_past_the_deadline_ends_with_its_state_named(cloud) -> None:
    ctx, runs, run_id, server = cloud
    ctx.config.cloud_deadline_s = 0.3
    server.job_scripts = [["training"] * 100_000]
    runs.start_training(run_id)
    run = run_job(runs.ctx, run_id)
    assert run.status is RunStatus.TRAINING_FAILED
    assert "is still 'training' after" in run.error_message and run.deeplake_job_id == "job-1"
