"""Generation: Scenario 1 (failure keeps progress), Scenario 3 / FR-3 (resume), retries, cancel.

Real parts only: a local DeepLake store, SQLite, and the project's OpenAI-compatible server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from dmdesk.domain.models import ProgressUpdate
from dmdesk.domain.snapshot import RunSnapshot
from dmdesk.domain.status import RunStatus
from dmdesk.jobs.runner import run_job
from dmdesk.services.context import ServiceContext
from dmdesk.services.runs import TrainingRunService
from dmdesk.testing.llm_server import FakeLLMServer, questions_for
from tests.conftest import chunk_ids, chunk_texts
from tests.helpers import chunk_pair_counts, pair_count


class Recorder:
    def __init__(self) -> None:
        self.updates: list[ProgressUpdate] = []

    def __call__(self, u: ProgressUpdate) -> None:
        self.updates.append(u)


def generate(runs: TrainingRunService, progress: Callable | None = None):
    run = runs.start_generation()
    return run_job(runs.ctx, run.id, progress)


def test_generation_completes_with_one_pair_set_per_chunk(
    runs: TrainingRunService, ctx: ServiceContext, llm_server: FakeLLMServer
) -> None:
    rec = Recorder()
    run = generate(runs, rec)
    assert run.status is RunStatus.GENERATED
    assert (run.processed_chunks, run.total_chunks, run.pair_count) == (200, 200, 200)
    assert chunk_pair_counts(ctx, run.id) == dict.fromkeys(chunk_ids(200), 1)
    assert rec.updates[0].processed == 0 and rec.updates[-1].processed == 200
    assert all(u.total == 200 for u in rec.updates)
    # The questions are the server's, for the right chunk.
    pairs = {p.chunk_id: p.question for p in runs.list_pairs(run.id)}
    assert pairs["chunk-00007"] == questions_for(chunk_texts(200)[7], 1)[0]


def test_questions_per_chunk_is_honoured(
    make_ctx: Callable[..., ServiceContext], store200, llm_server: FakeLLMServer
) -> None:
    ctx = make_ctx(vector_store_path=store200, questions_per_chunk=3, chunk_limit=20)
    run = generate(TrainingRunService(ctx))
    assert (run.total_chunks, run.pair_count) == (20, 60)
    assert set(chunk_pair_counts(ctx, run.id).values()) == {3}


def test_the_product_writes_three_questions_per_chunk_by_default(
    make_ctx: Callable[..., ServiceContext], store200, llm_server: FakeLLMServer
) -> None:
    """Issue 25: users ask new questions about the same chunks, in several ways; one question
    per chunk taught one way. (The kit's contexts write 1 to keep tests' counts plain.)"""
    ctx = make_ctx(vector_store_path=store200, questions_per_chunk=None, chunk_limit=10)
    assert ctx.config.questions_per_chunk == 3
    run = generate(TrainingRunService(ctx))
    assert set(chunk_pair_counts(ctx, run.id).values()) == {3}
    assert "(natural question, how-do-I question, keyword query)" in llm_server.stats.last_prompt


def test_a_job_releases_the_models_it_loaded_when_it_ends(
    runs: TrainingRunService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 26: the window held 1.6 GB after the demo's generation: the local embedder (and
    the local LLM) stayed loaded for the window's whole life."""
    import gc
    import weakref

    from dmdesk import embeddings

    class Model:  # stands for the loaded embedder: only its lifetime matters here
        pass

    model = Model()
    monkeypatch.setattr(embeddings, "_local_model", model)
    alive = weakref.ref(model)
    del model
    assert generate(runs).status is RunStatus.GENERATED
    gc.collect()
    assert embeddings._local_model is None and alive() is None


def test_scenario1_generation_failure_keeps_error_and_progress(
    runs: TrainingRunService, ctx: ServiceContext, llm_server: FakeLLMServer
) -> None:
    llm_server.configure(fail_after=50, fail_status=500)
    rec = Recorder()
    run = generate(runs, rec)
    assert run.status is RunStatus.GENERATING_FAILED
    assert run.processed_chunks == 50 and run.pair_count == 50 and run.total_chunks == 200
    assert pair_count(ctx, run.id) == 50
    assert "500" in run.error_message and "50/200" in run.error_message
    assert "Proceed" in run.error_message
    # The failure reaches the progress consumer's last report with the kept count.
    assert rec.updates[-1].processed == 50
    # Stored, not just returned:
    assert runs.get_run(run.id).error_message == run.error_message


def test_fr3_resume_skips_processed_chunks_and_totals_the_whole_run(
    runs: TrainingRunService, ctx: ServiceContext, llm_server: FakeLLMServer
) -> None:
    llm_server.configure(fail_after=51)
    first = generate(runs)
    assert first.status is RunStatus.GENERATING_FAILED
    done = set(chunk_pair_counts(ctx, first.id))
    assert len(done) == 51

    llm_server.configure(fail_after=None)
    llm_server.reset_stats()
    resumed = runs.proceed(first.id)
    assert resumed.status is RunStatus.GENERATING and resumed.error_message is None
    rec = Recorder()
    final = run_job(runs.ctx, first.id, rec)

    # The LLM was asked only for chunks without pairs (FR-3.4/3.5, SC-2).
    texts = dict(zip(chunk_ids(200), chunk_texts(200), strict=True))
    asked = set(llm_server.stats.passages)
    assert asked.isdisjoint({texts[c] for c in done})
    assert len(llm_server.stats.passages) == 149
    # Progress resumes at the point of failure, over the whole run (FR-3.6: 51/200, not 51/149).
    assert (rec.updates[0].processed, rec.updates[0].total) == (51, 200)
    assert final.status is RunStatus.GENERATED
    assert (final.processed_chunks, final.total_chunks, final.pair_count) == (200, 200, 200)
    assert chunk_pair_counts(ctx, first.id) == dict.fromkeys(chunk_ids(200), 1)


def test_fr3_8_a_failed_retry_returns_to_generating_failed_with_the_new_error(
    runs: TrainingRunService, llm_server: FakeLLMServer
) -> None:
    llm_server.configure(fail_after=10, fail_status=500)
    first = generate(runs)
    llm_server.configure(fail_after=llm_server.stats.successes + 5, fail_status=403)
    runs.proceed(first.id)
    again = run_job(runs.ctx, first.id)
    assert again.status is RunStatus.GENERATING_FAILED
    assert "403" in again.error_message and "500" not in again.error_message
    assert again.processed_chunks == 15


def test_transient_errors_are_retried_by_the_sdk(
    make_ctx: Callable[..., ServiceContext], store200, llm_server: FakeLLMServer
) -> None:
    ctx = make_ctx(
        vector_store_path=store200, llm_max_retries=3, chunk_limit=10, generation_concurrency=1
    )
    llm_server.configure(fail_after=3, fail_times=2, fail_status=503, retry_after=0)
    run = generate(TrainingRunService(ctx))
    assert run.status is RunStatus.GENERATED
    assert llm_server.stats.failures == 2 and run.pair_count == 10


def test_a_refused_key_fails_at_once_without_retries(
    make_ctx: Callable[..., ServiceContext], store200, llm_server: FakeLLMServer
) -> None:
    ctx = make_ctx(vector_store_path=store200, llm_max_retries=5, generation_concurrency=1)
    llm_server.configure(fail_after=0, fail_status=401)
    run = generate(TrainingRunService(ctx))
    assert run.status is RunStatus.GENERATING_FAILED
    assert "refused the API key (401)" in run.error_message
    assert llm_server.stats.requests == 1


def test_an_unusable_reply_is_asked_again_then_fails_the_run(
    make_ctx: Callable[..., ServiceContext], store200, llm_server: FakeLLMServer
) -> None:
    ctx = make_ctx(vector_store_path=store200, generation_concurrency=1)
    llm_server.configure(fail_after=0, fail_mode="malformed")
    run = generate(TrainingRunService(ctx))
    assert run.status is RunStatus.GENERATING_FAILED
    assert "no usable questions after 3 tries" in run.error_message
    assert llm_server.stats.requests == 3


def test_cancel_leaves_a_resumable_failed_run(
    runs: TrainingRunService, ctx: ServiceContext, llm_server: FakeLLMServer
) -> None:
    llm_server.configure(latency_s=0.02)
    cancel = threading.Event()

    def stop_at_40(u: ProgressUpdate) -> None:
        if u.processed >= 40:
            cancel.set()

    run = runs.start_generation()
    stopped = run_job(runs.ctx, run.id, stop_at_40, cancel)
    assert stopped.status is RunStatus.GENERATING_FAILED
    assert "Stopped by the administrator" in stopped.error_message
    assert 40 <= stopped.processed_chunks < 200
    assert pair_count(ctx, run.id) == stopped.processed_chunks

    llm_server.configure(latency_s=0)
    runs.proceed(run.id)
    assert run_job(runs.ctx, run.id).status is RunStatus.GENERATED
    assert chunk_pair_counts(ctx, run.id) == dict.fromkeys(chunk_ids(200), 1)


def test_a_run_taken_over_by_another_process_is_left_alone(
    runs: TrainingRunService, ctx: ServiceContext, llm_server: FakeLLMServer
) -> None:
    """If stale recovery failed our run and someone else proceeded it, we stop writing."""
    run = runs.start_generation()
    ctx.owner = "someone-else"  # the run's owner is the original token; we are not it anymore
    result = run_job(runs.ctx, run.id)
    assert result.status is RunStatus.GENERATING
    assert pair_count(ctx, run.id) == 0
    assert llm_server.stats.requests == 0


@pytest.mark.parametrize("mode", ["drop", "empty", "no_questions"])
def test_other_llm_faults_fail_the_run_with_a_message(
    make_ctx: Callable[..., ServiceContext], store200, llm_server: FakeLLMServer, mode: str
) -> None:
    ctx = make_ctx(vector_store_path=store200, generation_concurrency=1, chunk_limit=5)
    llm_server.configure(fail_after=2, fail_mode=mode)
    run = generate(TrainingRunService(ctx))
    assert run.status is RunStatus.GENERATING_FAILED
    assert run.processed_chunks == 2
    assert run.error_message.startswith("Generation stopped at 2/5 chunks: ")


def test_a_job_in_a_worker_thread_leaks_no_event_loop(
    runs: TrainingRunService, llm_server: FakeLLMServer
) -> None:
    """deeplake applies nest_asyncio, whose asyncio.run never closes a thread's loop; jobs run
    on a loop of their own. File descriptors must not grow job after job."""
    import gc
    import os

    from dmdesk.vectorstore._deeplake import import_deeplake

    import_deeplake()
    import deeplake.core.storage.s3  # noqa: F401  (this import applies nest_asyncio)

    def fds() -> int:
        gc.collect()
        return len(os.listdir("/proc/self/fd"))

    def job_in_thread() -> None:
        t = threading.Thread(target=lambda: run_job(runs.ctx, runs.start_generation().id))
        t.start()
        t.join()

    llm_server.configure(fail_after=0)  # each job fails at once: cheap, and resumable
    job_in_thread()
    runs.remove(runs.list_runs()[0].id)
    before = fds()
    for _ in range(3):
        job_in_thread()
        runs.remove(runs.list_runs()[0].id)
    assert fds() <= before


def test_resume_starts_past_the_rows_known_done_and_loses_nothing(
    runs: TrainingRunService, ctx: ServiceContext, llm_server: FakeLLMServer
) -> None:
    """A failed session records resume_row, the lowest row not known done; every row below it
    has pairs, and the next session starts there. Two failures in a row, then completion."""
    llm_server.configure(fail_after=60)
    first = generate(runs)
    hint = runs.get_run(first.id).settings.resume_row
    done = set(chunk_pair_counts(ctx, first.id))
    assert 0 < hint <= 60
    assert set(chunk_ids(200)[:hint]) <= done  # everything below the hint is processed
    llm_server.configure(fail_after=llm_server.stats.successes + 50)
    runs.proceed(first.id)
    second = run_job(runs.ctx, first.id)
    hint2 = second.settings.resume_row
    assert second.status is RunStatus.GENERATING_FAILED and hint2 >= hint
    assert set(chunk_ids(200)[:hint2]) <= set(chunk_pair_counts(ctx, first.id))
    llm_server.configure(fail_after=None)
    runs.proceed(first.id)
    final = run_job(runs.ctx, first.id)
    assert final.status is RunStatus.GENERATED
    assert chunk_pair_counts(ctx, first.id) == dict.fromkeys(chunk_ids(200), 1)


def test_a_running_session_records_its_resume_row_so_a_kill_9_resumes_near_where_it_died(
    runs: TrainingRunService, ctx: ServiceContext, llm_server: FakeLLMServer, monkeypatch
) -> None:
    """Every RESUME_HINT_EVERY_S the job writes `resume_row` with its pairs: what a kill -9
    leaves behind is at most that much work old, and every row below it has its pairs."""
    from dmdesk.jobs import generation

    monkeypatch.setattr(generation, "RESUME_HINT_EVERY_S", 0.2)
    llm_server.configure(latency_s=0.02)
    seen: list[tuple[int, set[str]]] = []

    def look(u: ProgressUpdate) -> None:
        hint = (runs.get_run(u.run_id).settings or RunSnapshot()).resume_row
        if hint:
            seen.append((hint, set(chunk_pair_counts(ctx, u.run_id))))

    run = run_job(runs.ctx, runs.start_generation().id, look)
    assert run.status is RunStatus.GENERATED
    assert seen, "no resume row was recorded while the run went on"
    assert max(h for h, _ in seen) > 100
    for hint, done in seen:  # a hint never runs ahead of the pairs
        assert set(chunk_ids(200)[:hint]) <= done


def test_a_read_cut_short_by_cancel_never_moves_the_resume_row_past_unsent_chunks(
    runs: TrainingRunService, ctx: ServiceContext, llm_server: FakeLLMServer, monkeypatch
) -> None:
    """The store read runs in a thread and cannot be interrupted: here the second batch's read
    is still running when the job is stopped. Its rows were never sent, so resume_row must stay
    at the end of the first batch, and the resumed run must still finish every chunk."""
    import time as _time

    from dmdesk.jobs import generation
    from dmdesk.vectorstore.service import VectorStoreService

    monkeypatch.setattr(generation, "READ_BATCH", 20)

    class SlowSecondRead(VectorStoreService):
        def iter_chunks(self, *args, **kwargs):
            inner = super().iter_chunks(*args, **kwargs)
            for n, batch in enumerate(inner):
                if n == 1 and not resumed:
                    _time.sleep(1.5)  # the iterator has already moved past this batch
                yield batch

    resumed = False
    ctx.vector_store_factory = lambda path: SlowSecondRead(path)
    cancel = threading.Event()

    def stop_after_first_batch(u: ProgressUpdate) -> None:
        if u.processed >= 20:
            cancel.set()

    run = runs.start_generation()
    stopped = run_job(runs.ctx, run.id, stop_after_first_batch, cancel)
    assert stopped.status is RunStatus.GENERATING_FAILED
    assert stopped.processed_chunks == 20
    assert stopped.settings.resume_row == 20
    resumed = True
    runs.proceed(run.id)
    final = run_job(runs.ctx, run.id)
    assert final.status is RunStatus.GENERATED, final.error_message
    assert chunk_pair_counts(ctx, run.id) == dict.fromkeys(chunk_ids(200), 1)


# -- issue 12: a store whose `id` tensor repeats ids -------------------------------------------

# 30 rows, 20 distinct ids: rows 20..29 repeat ids of rows 0..9 (with other texts).
REPEATED_IDS = chunk_ids(20) + chunk_ids(10)


def test_a_store_that_repeats_ids_completes_with_each_chunk_once(
    make_ctx: Callable[..., ServiceContext], dmdesk_store, llm_server: FakeLLMServer
) -> None:
    """A chunk's identity is its id (pairs and Deep Memory's relevance name chunks by id): the
    run has 20 chunks, not 30 rows, and ends `generated` instead of 'ended before every chunk
    was done' on every Proceed, forever."""
    store = dmdesk_store(chunk_texts(30), ids=REPEATED_IDS)
    runs = TrainingRunService(make_ctx(vector_store_path=store))
    run = generate(runs)
    assert run.status is RunStatus.GENERATED, run.error_message
    assert (run.processed_chunks, run.total_chunks, run.pair_count) == (20, 20, 20)
    assert chunk_pair_counts(runs.ctx, run.id) == dict.fromkeys(chunk_ids(20), 1)
    assert len(llm_server.stats.passages) == 20  # the first row of each id, once


@pytest.mark.parametrize("fail_after", [5, 15])
def test_a_resumed_run_over_repeated_ids_completes_with_each_chunk_once(
    make_ctx: Callable[..., ServiceContext],
    dmdesk_store,
    llm_server: FakeLLMServer,
    fail_after: int,
) -> None:
    store = dmdesk_store(chunk_texts(30), ids=REPEATED_IDS)
    runs = TrainingRunService(make_ctx(vector_store_path=store, generation_concurrency=2))
    llm_server.configure(fail_after=fail_after)
    first = generate(runs)
    assert first.status is RunStatus.GENERATING_FAILED
    llm_server.configure(fail_after=None)
    final = run_job(runs.ctx, runs.proceed(first.id).id)
    assert final.status is RunStatus.GENERATED, final.error_message
    assert (final.processed_chunks, final.total_chunks) == (20, 20)
    assert chunk_pair_counts(runs.ctx, final.id) == dict.fromkeys(chunk_ids(20), 1)
