"""Issue 26: a window that stays true for a whole working day. The shipped `dmdesk gui` (its own
entry point and loop, tests/e2e/shipped.py) stays open on a real X server (Xvfb, Qt's xcb
platform) for DMDESK_SOAK_S seconds (600 by default: ten minutes) of compressed activity, round
after round:

1. the window's own generation (Generate clicked), a close cancelled while it runs, another
   process approving the pairs, the window's own training;
2. another process starting a generation, its job killed with -9, the run removed;
3. another process generating, reviewing and training a run to completed.

Every change another process makes shows in the History within 2 s (a killed job: within the
stale limit, 3 s here, plus 2 s), and every report of the window — ten a second, the whole
time — is checked against the rules: Generate is enabled exactly when every run is completed
and no job runs (the service's rule, FR-7.4), and each line of the Workflow card is about the
runs the History shows now. A line may lag the History for at most 2 s, never stay behind."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dmdesk.testing.cli import dmdesk_env, run_dmdesk
from dmdesk.testing.llm_server import FakeLLMServer
from dmdesk.testing.plugin import chunk_ids, chunk_texts
from dmdesk.vectorstore.service import create_local_store
from tests.e2e.shipped import OBSERVED_GUI, Observed, job_pid
from tests.e2e.test_real_display import xvfb

pytestmark = pytest.mark.slow

SOAK_S = float(os.environ.get("DMDESK_SOAK_S", "600"))
LAG_S = 2.0
NEUTRAL_NEXT = "Review and training follow a finished generation."


def run_ids(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"[Rr]un #(\d+)", text)}


def broken_rules(report: dict[str, Any]) -> list[str]:
    """What in one report of the window contradicts its own History (empty: nothing)."""
    runs = report["runs"]  # newest first
    unfinished = [run_id for run_id, status in runs if status != "completed"]
    blocking = min(unfinished) if unfinished else None
    card = report["card"]
    wrong = []
    if report["generate"] != (blocking is None and not report["job"]):
        wrong.append(f"Generate enabled={report['generate']} with runs {runs}, job={report['job']}")
    if blocking is None:
        if card["blocked"]:
            wrong.append(f"blocked line {card['blocked']!r} with nothing unfinished")
        newest = runs[0][0] if runs else None
        expected = (
            f"Run #{newest} is completed; its results are in Training History. Generate "
            "starts the next run."
            if newest is not None
            else NEUTRAL_NEXT
        )
        if card["next"] != expected:
            wrong.append(f"next-step line {card['next']!r}, expected {expected!r}")
    else:
        if run_ids(card["blocked"]) != {blocking}:
            wrong.append(f"blocked line {card['blocked']!r}, blocking run #{blocking}")
        if run_ids(card["next"]) != {blocking}:
            wrong.append(f"next-step line {card['next']!r}, blocking run #{blocking}")
    shown = {run_id for run_id, _ in runs}
    if card["progress"] and not report["job"] and not run_ids(card["progress"]) <= shown:
        wrong.append(f"progress line {card['progress']!r} about a run not in {runs}")
    if report["error"]:
        wrong.append(f"an error box: {report['error']!r}")
    return wrong


class Rules:
    """Reads every report since the last check; a contradiction may last at most LAG_S."""

    def __init__(self, window: Observed) -> None:
        self.window = window
        self.seen = 0
        self.since: float | None = None
        self.checked = 0

    def check(self) -> None:
        fresh = self.window.since(self.seen)
        self.seen += len(fresh)
        for report in fresh:
            self.checked += 1
            wrong = broken_rules(report)
            if not wrong:
                self.since = None
                continue
            self.since = report["t"] if self.since is None else self.since
            assert report["t"] - self.since <= LAG_S, f"for > {LAG_S} s: {wrong}; {report}"


@pytest.fixture
def soak_window(tmp_path: Path):
    server = FakeLLMServer(latency_s=0.25).start()
    store = tmp_path / "store"
    create_local_store(store, chunk_ids(24), chunk_texts(24))
    env = dmdesk_env(
        tmp_path,
        vector_store_path=store,
        deep_memory_backend="local",
        llm_base_url=server.base_url,
        llm_model="test-model",
        llm_max_retries=0,
        generation_concurrency=2,
        stale_after_s=3,
    )
    env |= {
        "OPENAI_API_KEY": "sk-test",
        "QT_QPA_PLATFORM": "xcb",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
    }
    proc = subprocess.Popen(
        [xvfb(), "-a", "-s", "-screen 0 1280x1024x24", sys.executable, "-c", OBSERVED_GUI],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.PIPE,
        text=True,
        start_new_session=True,  # xvfb-run, its X server and the window: one group to stop
    )
    window = Observed(proc)
    try:
        window.wait_for(lambda r: True, 90, "its window")
        yield env, window
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        window.close()
        server.stop()


def cli(env: dict[str, str], *args: str) -> str:
    done = run_dmdesk(env, *args, timeout=180)
    assert done.returncode == 0, f"dmdesk {' '.join(args)}: {done.stderr}"
    return done.stdout


def test_the_shipped_window_stays_true_through_ten_minutes_of_activity(soak_window) -> None:
    env, window = soak_window
    rules = Rules(window)
    shown = window.wait_for(lambda r: r["runs"] == [] and r["generate"], 10, "an empty History")
    assert shown["card"]["next"] == NEUTRAL_NEXT

    def within(pred: Any, what: str, timeout: float = LAG_S + 0.5) -> dict[str, Any]:
        """After another process's change: the window shows it in time (the watcher reads a
        change token every second; 2 s, and the report's own 100 ms)."""
        t0 = time.monotonic()
        report = window.wait_for(pred, timeout, what)
        rules.check()
        assert report["t"] - t0 <= timeout
        return report

    def status(run_id: int, wanted: str):
        return lambda r: [run_id, wanted] in r["runs"]

    def click(name: str) -> None:
        ack = window.send(click=name)
        assert ack["ok"], f"{name}: {ack['why']}; the window shows {window.last}"

    known: set[int] = set()

    def new_run(r: dict[str, Any]) -> bool:
        return any(run_id not in known for run_id, _ in r["runs"])

    def newest(r: dict[str, Any]) -> int:
        (run_id,) = {run_id for run_id, _ in r["runs"]} - known
        known.add(run_id)
        return run_id

    rounds = 0
    end = time.monotonic() + SOAK_S

    def one_round() -> None:
        # 1. The window's own run: generate, a cancelled close, approval elsewhere, train.
        click("generateButton")
        run = newest(window.wait_for(lambda r: r["job"] and new_run(r), 5, "its run starting"))
        window.send(close=True)
        window.wait_for(lambda r: r["close_box"], 5, "the close dialog")
        assert window.send(cancel_close=True)["ok"]
        window.wait_for(lambda r: not r["close_box"], 5, "the close dialog gone")
        window.wait_for(lambda r: r["job"], 1, "the run still going after Cancel")
        window.wait_for(lambda r: status(run, "generated")(r) and not r["job"], 60, "generated")
        rules.check()
        cli(env, "review", str(run), "--approve-all")
        within(lambda r: r["train"] and "24 approved" in r["card"]["next"], "the approvals")
        click("trainButton")
        window.wait_for(lambda r: status(run, "completed")(r) and not r["job"], 120, "trained")
        done = within(lambda r: r["generate"], "Generate ready again", 5)
        assert done["card"]["progress"] in ("", f"Run #{run} is completed."), done

        # 2. Another process starts a run; its job is killed; the run is removed.
        cli(env, "generate")
        run = newest(within(lambda r: new_run(r) and not r["generate"], "the new run"))
        assert status(run, "generating")(window.last)
        os.kill(job_pid(run), signal.SIGKILL)
        within(status(run, "generating_failed"), "the killed run failed", 3 + LAG_S + 3)
        cli(env, "remove", str(run), "--yes")
        within(lambda r: all(i != run for i, _ in r["runs"]) and r["generate"], "the removal")
        known.discard(run)  # its id may be given again

        # 3. Another process takes a run from start to completed.
        cli(env, "generate", "--wait")
        run = newest(within(new_run, "the run generated elsewhere"))
        within(status(run, "generated"), "it generated")
        cli(env, "review", str(run), "--approve-all")
        cli(env, "train", str(run), "--wait")
        within(lambda r: status(run, "completed")(r) and r["generate"], "its training")
        rules.check()

    while rounds == 0 or time.monotonic() < end:
        rounds += 1
        one_round()

    rules.check()
    assert rules.checked > SOAK_S * 5  # ~10 reports a second were read, the whole time
    print(f"soak: {rounds} rounds, {rules.checked} reports checked in {SOAK_S:.0f} s")
