"""Issue 13, Batch API mode (`llm_mode = "batch"`): end to end through the openai SDK against the
test server's Batch API, failed lines retried, Stop cancels the batches, a process killed
while batches are open is re-attached on the next start — no batch created twice, every
chunk's pairs exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from dmdesk.domain.models import ProgressUpdate
from dmdesk.domain.snapshot import open_batches
from dmdesk.domain.status import RunStatus
from dmdesk.jobs.runner import run_job
from dmdesk.services.runs import TrainingRunService
from dmdesk.testing.cli import dmdesk_env, run_dmdesk
from dmdesk.testing.llm_server import FakeLLMServer
from dmdesk.testing.plugin import chunk_ids, chunk_texts
from tests.helpers import chunk_pair_counts

BATCH = {
    "llm_mode": "batch",
    "llm_model": "gpt-4o-mini",
    "batch_max_requests": 20,
    "batch_poll_interval_s": 0.05,
}


def answered_once(server: FakeLLMServer, n: int) -> bool:
    """The server answered each chunk's line exactly once (nothing paid for twice)."""
    counts = Counter(server.stats.batch_custom_ids)
    return len(counts) == n and set(counts.values()) == {1}


def test_batch_mode_end_to_end_with_failed_lines_retried(
    dmdesk_context, dmdesk_store, dmdesk_llm_server: FakeLLMServer, monkeypatch
) -> None:
    monkeypatch.delenv("DMDESK_LLM_PRICE_PER_MTOK", raising=False)
    dmdesk_llm_server.configure(batch_delay_s=0.3, batch_fail_fraction=0.2)
    ctx = dmdesk_context(vector_store_path=dmdesk_store(chunk_texts(50)), **BATCH)
    runs = TrainingRunService(ctx)
    updates: list[ProgressUpdate] = []
    run = run_job(runs.ctx, runs.start_generation().id, updates.append)

    assert run.status is RunStatus.GENERATED, run.error_message
    assert chunk_pair_counts(ctx, run.id) == dict.fromkeys(chunk_ids(50), 1)
    stats = dmdesk_llm_server.stats
    assert stats.requests == 0  # not one online chat call
    assert stats.batches_created >= 4  # 3 of ≤ 20 requests, then the failed lines again
    assert answered_once(dmdesk_llm_server, 50)
    assert (run.prompt_tokens, run.completion_tokens) == (
        stats.prompt_tokens,
        stats.completion_tokens,
    )
    online = (stats.prompt_tokens * 0.15 + stats.completion_tokens * 0.60) / 1e6
    assert run.cost_usd == pytest.approx(online / 2)  # the Batch API's half price
    assert not open_batches(run.settings)
    assert any("requests answered" in u.message for u in updates)
    # progress came from the batches' request counts, before their answers were written
    assert any("requests answered" in u.message and u.processed > 0 for u in updates)


def test_stop_cancels_the_open_batches_and_proceed_finishes_exactly_once(
    dmdesk_context, dmdesk_store, dmdesk_llm_server: FakeLLMServer, capsys
) -> None:
    dmdesk_llm_server.configure(batch_delay_s=4.0)
    ctx = dmdesk_context(vector_store_path=dmdesk_store(chunk_texts(50)), **BATCH)
    runs = TrainingRunService(ctx)
    cancel = threading.Event()

    def stop_while_waiting(u: ProgressUpdate) -> None:
        if "waiting for the provider" in u.message:
            cancel.set()

    started = time.monotonic()
    stopped = run_job(runs.ctx, runs.start_generation().id, stop_while_waiting, cancel)
    assert time.monotonic() - started < 4.0  # did not wait for the batches to end
    assert stopped.status is RunStatus.GENERATING_FAILED
    assert "Stopped by the administrator" in (stopped.error_message or "")
    assert dmdesk_llm_server.stats.batches_created == 3
    assert dmdesk_llm_server.stats.batches_cancelled == 3
    assert len(open_batches(stopped.settings)) == 3  # Proceed collects what they answered
    from dmdesk.cli import main

    assert main(["run", str(stopped.id)]) == 0
    assert "3 sent to the Batch API, 3 not collected yet" in capsys.readouterr().out

    dmdesk_llm_server.configure(batch_delay_s=0.0)
    done = run_job(runs.ctx, runs.proceed(stopped.id).id)
    assert done.status is RunStatus.GENERATED, done.error_message
    assert chunk_pair_counts(ctx, done.id) == dict.fromkeys(chunk_ids(50), 1)
    assert answered_once(dmdesk_llm_server, 50)


def test_a_process_killed_while_batches_are_open_is_reattached_and_pays_once(
    tmp_path: Path, dmdesk_context, dmdesk_store, dmdesk_llm_server: FakeLLMServer, monkeypatch
) -> None:
    store = dmdesk_store(chunk_texts(50))
    dmdesk_llm_server.configure(batch_delay_s=6.0)
    env = dmdesk_env(
        tmp_path / "proc",
        vector_store_path=store,
        deep_memory_backend="local",
        llm_base_url=dmdesk_llm_server.base_url,
        llm_max_retries=0,
        stale_after_s=3,
        **BATCH,
    )
    errors = tmp_path / "stderr.txt"
    with errors.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dmdesk", "generate", "--wait"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 60
        while dmdesk_llm_server.stats.batches_created < 3:
            assert proc.poll() is None, errors.read_text()
            assert time.monotonic() < deadline, "the batches were never created"
            time.sleep(0.05)
        time.sleep(0.3)  # the last batch id is recorded
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert dmdesk_llm_server.stats.batch_lines_answered == 0  # killed while they were open

    # The next start of dmdesk (any command) re-attaches: a detached worker follows the batches.
    time.sleep(3.5)  # the dead process's heartbeat is stale now
    follow = run_dmdesk(env, "run", "1", "--follow", timeout=120)
    assert follow.returncode == 0, follow.stderr
    for key in ("DMDESK_DATA_DIR", "DMDESK_CONFIG_FILE"):
        monkeypatch.setenv(key, env[key])
    ctx = dmdesk_context(vector_store_path=store, stale_after_s=3, **BATCH)
    done = TrainingRunService(ctx).get_run(1)
    assert done.status is RunStatus.GENERATED, done.error_message
    assert "interrupted" not in (done.error_message or "")
    assert dmdesk_llm_server.stats.batches_created == 3  # none created twice
    assert chunk_pair_counts(ctx, done.id) == dict.fromkeys(chunk_ids(50), 1)
    assert answered_once(dmdesk_llm_server, 50)


def test_a_batch_created_but_never_recorded_is_found_by_its_file_not_created_again(
    dmdesk_context, dmdesk_store, dmdesk_llm_server: FakeLLMServer, monkeypatch
) -> None:
    """The window between `batches.create` and the record of its id: the input file was
    recorded first, so the next session finds the batch by it (`batches.list`)."""
    from dmdesk.llm.openai_batch import BatchClient

    original = BatchClient.create

    async def create_then_die(self, file_id, metadata):
        await original(self, file_id, metadata)
        raise RuntimeError("killed before the batch id was recorded")

    monkeypatch.setattr(BatchClient, "create", create_then_die)
    ctx = dmdesk_context(vector_store_path=dmdesk_store(chunk_texts(10)), **BATCH)
    runs = TrainingRunService(ctx)
    failed = run_job(runs.ctx, runs.start_generation().id)
    assert failed.status is RunStatus.GENERATING_FAILED
    [record] = open_batches(failed.settings)
    assert record["file"] and record["id"] is None
    monkeypatch.setattr(BatchClient, "create", original)
    done = run_job(runs.ctx, runs.proceed(failed.id).id)
    assert done.status is RunStatus.GENERATED, done.error_message
    assert dmdesk_llm_server.stats.batches_created == 1
    assert chunk_pair_counts(ctx, done.id) == dict.fromkeys(chunk_ids(10), 1)
    assert answered_once(dmdesk_llm_server, 10)


def test_batch_mode_submits_only_what_the_budget_allows(
    dmdesk_context, dmdesk_store, dmdesk_llm_server: FakeLLMServer, monkeypatch
) -> None:
    monkeypatch.setenv("DMDESK_LLM_PRICE_PER_MTOK", "1000,1000")  # ~$0.1 a line at half price
    store = dmdesk_store(chunk_texts(60))
    ctx = dmdesk_context(vector_store_path=store, budget_usd=2, **BATCH)
    runs = TrainingRunService(ctx)
    stopped = run_job(runs.ctx, runs.start_generation().id)
    assert stopped.status is RunStatus.GENERATING_FAILED
    assert "budget reached ($" in (stopped.error_message or "")
    assert 0 < stopped.processed_chunks < 60
    assert stopped.cost_usd is not None and stopped.cost_usd <= 2
    raised = TrainingRunService(dmdesk_context(vector_store_path=store, budget_usd=50, **BATCH))
    done = run_job(raised.ctx, raised.proceed(stopped.id).id)
    assert done.status is RunStatus.GENERATED, done.error_message
    assert chunk_pair_counts(ctx, done.id) == dict.fromkeys(chunk_ids(60), 1)
    assert answered_once(dmdesk_llm_server, 60)


def test_proceed_online_collects_what_the_stopped_batches_answered_then_goes_on_online(
    dmdesk_context, dmdesk_store, dmdesk_llm_server: FakeLLMServer
) -> None:
    dmdesk_llm_server.configure(batch_delay_s=2.0)
    store = dmdesk_store(chunk_texts(50))
    ctx = dmdesk_context(vector_store_path=store, **BATCH)
    runs = TrainingRunService(ctx)
    cancel = threading.Event()

    def stop_halfway(u: ProgressUpdate) -> None:
        if "requests answered" in u.message and u.processed >= 20:
            cancel.set()

    stopped = run_job(runs.ctx, runs.start_generation().id, stop_halfway, cancel)
    assert stopped.status is RunStatus.GENERATING_FAILED
    online = TrainingRunService(
        dmdesk_context(vector_store_path=store, **(BATCH | {"llm_mode": "online"}))
    )
    done = run_job(online.ctx, online.proceed(stopped.id).id)
    assert done.status is RunStatus.GENERATED, done.error_message
    assert chunk_pair_counts(ctx, done.id) == dict.fromkeys(chunk_ids(50), 1)
    by_batch = set(dmdesk_llm_server.stats.batch_custom_ids)
    by_chat = {p.split(":")[0] for p in dmdesk_llm_server.stats.ok_passages}
    assert len(by_batch) >= 20 and len(dmdesk_llm_server.stats.ok_passages) == 50 - len(by_batch)
    assert not open_batches(done.settings)
    assert by_chat  # the rest went online
