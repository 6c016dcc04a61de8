"""Issue 26: the window users launch follows other processes. The live-window tests drive the
window over the test's QApplication (qasync in its "already running" mode); `dmdesk gui` runs
`run_gui`'s own loop — and there the watcher never delivered: the window was built (and its
watcher spawned) before `aio.run`, whose start cancelled every task made before it.

Here `dmdesk gui` itself runs in a child process (the real entry point, `dmdesk.cli.main`), with
only an observer added: a Qt timer that prints the window's History and Generate's state every
100 ms. The test starts a run from another process, kills its job with -9 and removes it, and
reads what the window shows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dmdesk.testing.cli import dmdesk_env, run_dmdesk
from dmdesk.testing.llm_server import FakeLLMServer
from dmdesk.vectorstore.service import create_local_store

pytestmark = pytest.mark.slow

OBSERVED_GUI = """
import json, sys, time
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from dmdesk.ui.main_window import MainWindow
import dmdesk.cli

app = QApplication(sys.argv[:1])

def report():
    for w in QApplication.topLevelWidgets():
        if isinstance(w, MainWindow) and w.isVisible():
            runs = [[r.id, r.status.value] for r in w.page.history_model.runs()]
            button = w.findChild(object, "generateButton")
            print(json.dumps({"t": time.monotonic(), "runs": runs,
                              "generate": bool(button and button.isEnabled())}), flush=True)

timer = QTimer()
timer.timeout.connect(report)
timer.start(100)
sys.exit(dmdesk.cli.main(["gui"]))
"""


class Observed:
    """The child's reports, read in a thread; `wait_for(pred)` returns the first report that
    satisfies `pred`, with the time it came."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.reports: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def close(self) -> None:
        """After the child has exited: the reader has met the end of its output; the pipe is
        closed here, not left to the garbage collector (pytest turns that into an error)."""
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                with self._lock:
                    self.reports.append(json.loads(line))

    def wait_for(self, pred: Any, timeout: float, what: str) -> dict[str, Any]:
        end = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < end:
            with self._lock:
                fresh = self.reports[seen:]
                seen = len(self.reports)
            for report in fresh:
                if pred(report):
                    return report
            if self.proc.poll() is not None:
                pytest.fail(f"the window exited ({self.proc.returncode}) waiting for {what}")
            time.sleep(0.05)
        last = self.reports[-1] if self.reports else None
        pytest.fail(f"the window did not show {what} within {timeout} s; it shows {last}")


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
        stdin=subprocess.DEVNULL,
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


def job_pid(run_id: int) -> int:
    out = subprocess.run(
        ["pgrep", "-f", f"dmdesk _job {run_id} "], capture_output=True, text=True
    ).stdout.split()
    assert out, "no job process"
    return int(out[0])


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
