"""DeepLake Cloud end to end from the command line, with deeplake's real client code in each
dmdesk process and only Activeloop's HTTP answered by the loopback stand-in: generate over a
`hub://` store, train in a detached job, `kill -9` it while DeepLake trains, and see the next
dmdesk start re-attach to the same job without sending a second train request."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from dmdesk.testing.activeloop_server import ActiveloopServer
from dmdesk.testing.cli import dmdesk_env, run_dmdesk
from dmdesk.testing.llm_server import FakeLLMServer
from tests.conftest import chunk_ids, chunk_texts

pytestmark = pytest.mark.slow


def wait_for(predicate, timeout: float = 60, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")


def job_processes() -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info.get("cmdline") or []
        if "_job" in cmd and "dmdesk" in " ".join(cmd):
            found.append(p)
    return found


def cloud_env(
    root: Path, server: ActiveloopServer, llm_server: FakeLLMServer, **settings: object
) -> dict[str, str]:
    """A dmdesk subprocess environment on `hub://org/kb`, with deeplake's client pointed at the
    Activeloop stand-in and questions/embeddings from the test LLM server."""
    return dmdesk_env(
        root,
        vector_store_path="hub://org/kb",
        deep_memory_backend="deeplake",
        embedding="openai:test-embedding",
        llm_base_url=llm_server.base_url,
        llm_model="test-model",
        activeloop_url=server.url,
        **settings,
    ) | {"HOME": str(root), "ACTIVELOOP_TOKEN": "tok-test-1234"}


def test_kill_9_during_cloud_training_reattaches_without_a_second_train_request(
    tmp_path: Path, llm_server: FakeLLMServer
) -> None:
    with ActiveloopServer(tmp_path / "cloud") as server:
        server.create_store("kb", chunk_ids(20), chunk_texts(20))
        server.job_scripts = [["training"] * 100_000]
        env = cloud_env(tmp_path, server, llm_server, stale_after_s=3, cloud_poll_interval_s=0.2)

        def run(*args: str):
            return run_dmdesk(env, *args, timeout=180)

        def show() -> dict:
            out = run("run", "1", "--json")
            assert out.returncode == 0, out.stderr
            return json.loads(out.stdout)

        generated = run("generate", "--wait")
        assert generated.returncode == 0, generated.stderr
        assert show()["pair_count"] == 20
        assert run("review", "1", "--approve-all").returncode == 0
        started = run("train", "1")
        assert started.returncode == 0, started.stderr
        wait_for(lambda: show()["deeplake_job_id"] == "job-1")
        wait_for(lambda: len(server.calls("GET", "/api/deepmemory/v1/jobs/job-1/status")) >= 2)
        (job,) = wait_for(job_processes)
        os.kill(job.pid, signal.SIGKILL)
        job.wait(10)
        server.jobs["job-1"]["script"] = ["training", "completed"]
        time.sleep(3.5)  # the heartbeat goes stale
        assert run("runs").returncode == 0  # any start recovers stale runs: re-attach
        final = wait_for(lambda: (r := show())["status"] == "completed" and r, timeout=120)
        assert final["deeplake_job_id"] == "job-1"
        assert len(server.calls("POST", "/api/deepmemory/v1/train")) == 1
        # 20 pairs leave too few on unseen chunks to judge: kept, never activated
        assert final["metrics"]["activation"]["activated"] is False
        wait_for(lambda: not job_processes(), timeout=30)
