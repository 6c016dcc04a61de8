"""Issue 26: the window users launch follows other processes. The live-window tests drive the
window over the test's QApplication (qasync in its "already running" mode); `dmdesk gui` runs
`run_gui`'s own loop — and there the watcher never delivered: the window was built (and its
watcher spawned) before `aio.run`, whose start cancelled every task made before it.

Here `dmdesk gui` itself runs in a child process (the real entry point, `dmdesk.cli.main`), with
only an observer added (tests/e2e/shipped.py): a Qt timer that prints what the window shows
every 100 ms. The test starts a run from another process, kills its job with -9 and removes it, and
reads what the window shows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dmdesk.testing.cli import dmdesk_env, run_dmdesk
from dmdesk.testing.llm_server import FakeLLMServer
from dmdesk.vectorstore.service import create_local_store
from tests.e2e.shipped import OBSERVED_GUI, Observed, job_pid

pytestmark = pytest.mark.slow


@pytest.fixture
def shipped_window(tmp_path: Path):
    server = FakeLLMServer(latency_s=0.3).start()
    store = tmp_path / "store"
    create_local_store(store, [f"c{i}" for i in range(30)], [f"Chunk {i}." for i in range(30)])
    env = dmdesk_env(
        tmp_path,
        vector_store_path=store,
        deep_memory_backend="local",
        llm_base_url=server.base_url,
        generation_concurrency=1,
        stale_after_s=3,
    )
    env |= {"OPENAI_API_KEY": "sk-test", "QT_QPA_PLATFORM": "offscreen"}
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"
    proc = subprocess.Popen(
        [sys.executable, "-c", OBSERVED_GUI],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.PIPE,
        text=True,
    )
    observed = Observed(proc)
    try:
        observed.wait_for(lambda r: True, 60, "its window")
        yield env, observed
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        observed.close()
        server.stop()


def test_the_shipped_window_shows_a_run_started_killed_and_removed_elsewhere(
    shipped_window,
) -> None:
    env, window = shipped_window
    window.wait_for(lambda r: r["runs"] == [] and r["generate"], 10, "an empty History")

    started = run_dmdesk(env, "generate")  # detached: the job is a process of its own
    assert started.returncode == 0, started.stderr
    t0 = time.monotonic()
    window.wait_for(lambda r: r["runs"] == [[1, "generating"]], 2.5, "run 1 generating")
    assert time.monotonic() - t0 < 2.5
    window.wait_for(lambda r: r["runs"] and not r["generate"], 2, "Generate disabled")

    os.kill(job_pid(1), signal.SIGKILL)
    # stale after 3 s without a heartbeat; the window recovers stale runs every second
    window.wait_for(lambda r: r["runs"] == [[1, "generating_failed"]], 8, "run 1 failed")

    removed = run_dmdesk(env, "remove", "1", "--yes")
    assert removed.returncode == 0, removed.stderr
    t1 = time.monotonic()
    window.wait_for(lambda r: r["runs"] == [] and r["generate"], 2.5, "run 1 gone")
    assert time.monotonic() - t1 < 2.5
