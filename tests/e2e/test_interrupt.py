"""Ctrl-C (SIGINT) and SIGTERM during `--wait` (issue 16): the job is cancelled cooperatively, the
run is failed and resumable at once, the process exits 130 saying how to continue, and Proceed
then finishes with every chunk's pairs exactly once. Before: `unexpected error: KeyError: 'run'`,
exit 1, the run stuck `generating` until its heartbeat went stale."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dmdesk.testing.activeloop_server import ActiveloopServer
from dmdesk.testing.cli import dmdesk_env, run_dmdesk
from dmdesk.testing.llm_server import FakeLLMServer
from tests.conftest import chunk_ids, chunk_texts
from tests.e2e.test_cloud_cli import cloud_env

pytestmark = pytest.mark.slow


def db_row(root: Path, sql: str) -> tuple:
    db = sqlite3.connect(root / "data" / "dmdesk.db", timeout=10)
    try:
        return db.execute(sql).fetchone()
    finally:
        db.close()


def interrupt_when(proc: subprocess.Popen, ready, sig: int, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the job never got going"
        time.sleep(0.05)
    proc.send_signal(sig)
    return time.monotonic()


def popen(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dmdesk", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def test_sigint_during_generate_wait_stops_cleanly_and_proceed_finishes_once(
    tmp_path: Path, store200: Path, llm_server: FakeLLMServer
) -> None:
    llm_server.configure(latency_s=0.05)
    env = dmdesk_env(
        tmp_path,
        vector_store_path=store200,
        deep_memory_backend="local",
        llm_base_url=llm_server.base_url,
        generation_concurrency=2,
    )
    assert run_dmdesk(env, "runs").returncode == 0  # the schema first
    proc = popen(env, "generate", "--wait")

    def going() -> bool:
        row = db_row(tmp_path, "SELECT processed_chunks FROM deep_memory_training_runs")
        return bool(row and row[0] >= 6)

    sent = interrupt_when(proc, going, signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 5, "Stop took too long"
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "unexpected error" not in err
    assert "dmdesk proceed 1 --wait" in err
    status, processed = db_row(
        tmp_path, "SELECT status, processed_chunks FROM deep_memory_training_runs"
    )
    assert status == "generating_failed" and 6 <= processed < 200

    done = run_dmdesk(env, "proceed", "1", "--wait", timeout=120)
    assert done.returncode == 0, done.stderr
    counts = dict(
        sqlite3.connect(tmp_path / "data" / "dmdesk.db")
        .execute("SELECT chunk_id, count(*) FROM deep_memory_training_pairs GROUP BY chunk_id")
        .fetchall()
    )
    assert counts == dict.fromkeys(chunk_ids(200), 1)


def test_sigterm_during_train_wait_leaves_a_resumable_training_failed_run(
    tmp_path: Path, llm_server: FakeLLMServer
) -> None:
    with ActiveloopServer(tmp_path / "cloud") as server:
        server.create_store("kb", chunk_ids(20), chunk_texts(20))
        server.job_scripts = [["training"] * 100_000]
        env = cloud_env(tmp_path, server, llm_server, cloud_poll_interval_s=0.1)
        assert run_dmdesk(env, "generate", "--wait").returncode == 0
        assert run_dmdesk(env, "review", "1", "--approve-all").returncode == 0
        proc = popen(env, "train", "1", "--wait")

        def polled() -> bool:
            return len(server.calls("GET", "/api/deepmemory/v1/jobs/job-1/status")) >= 2

        sent = interrupt_when(proc, polled, signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        assert time.monotonic() - sent < 5
        assert proc.returncode == 130, err
        status, error, job = db_row(
            tmp_path,
            "SELECT status, error_message, deeplake_job_id FROM deep_memory_training_runs",
        )
        assert status == "training_failed" and job == "job-1"
        assert "still be training remotely" in error  # a training job cannot be cancelled
        server.jobs["job-1"]["script"] = ["completed"]
        done = run_dmdesk(env, "proceed", "1", "--wait", timeout=120)
        assert done.returncode == 0, done.stderr
        assert len(server.calls("POST", "/api/deepmemory/v1/train")) == 1
