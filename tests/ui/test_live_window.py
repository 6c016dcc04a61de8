"""Issue 11: a window an admin can trust. It shows what other processes do (a run started or
reviewed from a terminal, a job killed with -9) without a click; closing during a run never
crashes and never loses the run; Stop returns quickly; the open row stays open.

Real parts: the window on a real Qt event loop, `dmdesk` commands in separate processes, the
test LLM server, SQLite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from PySide6.QtCore import Qt, QThread
from PySide6.QtWidgets import QApplication, QMessageBox, QPushButton

from dmdesk.domain.status import RunStatus
from dmdesk.services.runs import TrainingRunService
from dmdesk.testing.llm_server import FakeLLMServer
from dmdesk.ui.history_model import COL_PAIRS

pytestmark = pytest.mark.slow


def dmdesk(*args: str) -> subprocess.Popen:
    """A dmdesk command in a process of its own, with this test's settings (the plugin's
    fixtures put them in the environment)."""
    return subprocess.Popen(
        [sys.executable, "-m", "dmdesk", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )


def test_a_run_started_by_another_process_appears_within_two_seconds(
    qtbot, dmdesk_window, dmdesk_llm_server: FakeLLMServer
) -> None:
    dmdesk_llm_server.configure(latency_s=0.3)
    win = dmdesk_window(chunks=20, generation_concurrency=1)
    assert win.widget("generateButton").isEnabled()
    proc = dmdesk("generate", "--wait")
    qtbot.waitUntil(lambda: TrainingRunService(win.ctx).list_runs() != [], timeout=30_000)
    seen = time.monotonic()
    qtbot.waitUntil(lambda: win.page.history_model.rowCount() == 1, timeout=2_000)
    assert time.monotonic() - seen < 2.0
    assert not win.widget("generateButton").isEnabled()
    assert "Run #1" in win.widget("generateBlockedLabel").text()
    proc.kill()
    proc.wait()


def test_the_watcher_sees_other_processes_while_the_loops_thread_pool_is_busy(
    qtbot, dmdesk_window, dmdesk_llm_server: FakeLLMServer
) -> None:
    """Seen in CI: blocking work left in the GUI loop's two pool threads (an estimate waiting
    on a keyring) left the watcher without a thread, and a run started elsewhere never showed.
    The watcher reads in a thread of its own."""
    import threading

    from dmdesk.ui import aio

    win = dmdesk_window(chunks=4)
    release = threading.Event()
    busy = [aio.loop().run_in_executor(None, release.wait, 30) for _ in range(4)]
    try:
        run = TrainingRunService(win.ctx).start_generation()  # as another process would
        qtbot.waitUntil(lambda: win.page.history_model.rowCount() == 1, timeout=3_000)
        assert win.page.history_model.runs()[0].id == run.id
    finally:
        release.set()
        qtbot.waitUntil(lambda: all(f.done() for f in busy), timeout=5_000)


def test_a_killed_job_becomes_recoverable_while_the_window_stays_open(
    qtbot, dmdesk_window, dmdesk_llm_server: FakeLLMServer
) -> None:
    """kill -9 of the process running a run: its row turns failed, with Proceed and Delete,
    and the Workflow card agrees — no restart, no click."""
    dmdesk_llm_server.configure(latency_s=0.3)
    win = dmdesk_window(chunks=40, generation_concurrency=1, stale_after_s=3)
    proc = dmdesk("generate", "--wait")
    runs = TrainingRunService(win.ctx)
    qtbot.waitUntil(
        lambda: bool(runs.list_runs()) and runs.list_runs()[0].processed_chunks >= 2,
        timeout=30_000,
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    def failed_in_the_window() -> bool:
        # The window may not show the run yet when it is killed (it polls every second): an
        # empty History is "not yet", not an error (waitUntil retries only on a False).
        shown = win.page.history_model.runs()
        return bool(shown) and shown[0].status is RunStatus.GENERATING_FAILED

    qtbot.waitUntil(failed_in_the_window, timeout=15_000)
    actions = win.expand_row(1)
    assert actions.proceed_button is not None and actions.remove_button is not None
    assert "Proceed with it or delete it" in win.widget("generateBlockedLabel").text()


def test_a_review_from_the_command_line_shows_in_the_window(qtbot, dmdesk_window) -> None:
    """Before: after `dmdesk review 1 --reject …` the window kept showing the old count."""
    win = dmdesk_window(chunks=6)
    win.click("generateButton")
    win.wait_for_status(1, "generated")
    pairs = win.page.history_model.index(0, COL_PAIRS)
    assert dmdesk("review", "1", "--approve-all").wait(60) == 0
    qtbot.waitUntil(lambda: pairs.data() == "6 (6 approved)", timeout=3_000)
    ids = [str(p.id) for p in TrainingRunService(win.ctx).list_pairs(1)][:2]
    assert dmdesk("review", "1", "--reject", *ids).wait(60) == 0
    qtbot.waitUntil(lambda: pairs.data() == "6 (4 approved)", timeout=3_000)
    assert "Run #1: 6 pairs, 4 approved" in win.widget("reviewLabel").text()


def answer_close(qtbot, window, button_name: str) -> None:
    def shown() -> bool:
        box = window.findChild(QMessageBox, "closeRunningBox")
        return box is not None and box.isVisible()

    qtbot.waitUntil(shown, timeout=5_000)
    box = window.findChild(QMessageBox, "closeRunningBox")
    if button_name == "cancel":
        button = box.button(QMessageBox.StandardButton.Cancel)
    else:
        button = box.findChild(QPushButton, button_name)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def generating_window(qtbot, dmdesk_window, server: FakeLLMServer, chunks: int, latency: float):
    """A window whose generation is under way (3 chunks done), asking before it closes."""
    server.configure(latency_s=latency)
    win = dmdesk_window(chunks=chunks, generation_concurrency=1)
    win.window.ask_before_stopping = True
    win.click("generateButton")
    qtbot.waitUntil(lambda: win.widget("progressBar").value() >= 3, timeout=30_000)
    return win


def test_closing_twice_while_stopping_never_aborts_and_leaves_a_resumable_run(
    qtbot, dmdesk_window, dmdesk_llm_server: FakeLLMServer
) -> None:
    """Close → Cancel keeps it running; close → Stop and close → close again at once: the
    second close is ignored, the window says it is stopping and closes itself once the worker
    has finished. Before: a nested loop per close, then `QThread: Destroyed while thread is
    still running` and SIGABRT."""
    win = generating_window(qtbot, dmdesk_window, dmdesk_llm_server, chunks=25, latency=0.2)
    w = win.window
    w.close()
    answer_close(qtbot, w, "cancel")
    assert w.isVisible() and w.page.job_running

    w.close()
    answer_close(qtbot, w, "stopAndCloseButton")
    w.close()  # impatient: ignored, no second question
    assert (
        w.findChild(QMessageBox, "closeRunningBox") is None
        or not w.findChild(QMessageBox, "closeRunningBox").isVisible()
    )
    assert "Stopping" in win.widget("progressLabel").text()
    qtbot.waitUntil(lambda: not w.isVisible(), timeout=15_000)
    assert not any(t.isRunning() for t in w.findChildren(QThread))
    (run,) = TrainingRunService(win.ctx).list_runs()
    assert run.status is RunStatus.GENERATING_FAILED and run.processed_chunks >= 3
    assert TrainingRunService(win.ctx).proceed(run.id).status is RunStatus.GENERATING


def test_keep_running_in_the_background_hands_the_run_to_a_detached_process(
    qtbot, dmdesk_window, dmdesk_llm_server: FakeLLMServer
) -> None:
    win = generating_window(qtbot, dmdesk_window, dmdesk_llm_server, chunks=40, latency=0.1)
    w = win.window
    w.close()
    answer_close(qtbot, w, "keepRunningButton")
    qtbot.waitUntil(lambda: not w.isVisible(), timeout=15_000)
    runs = TrainingRunService(win.ctx)
    assert runs.get_run(1).status is RunStatus.GENERATING  # not failed: it goes on
    qtbot.waitUntil(lambda: runs.get_run(1).status is RunStatus.GENERATED, timeout=60_000)
    counts = win.pair_counts(1)
    assert len(counts) == 40 and set(counts.values()) == {1}  # every chunk, exactly once


def test_stop_returns_within_two_seconds_against_a_slow_llm(
    qtbot, dmdesk_window, dmdesk_llm_server: FakeLLMServer
) -> None:
    dmdesk_llm_server.configure(latency_s=10.0)
    win = dmdesk_window(chunks=10, generation_concurrency=2)
    win.click("generateButton")
    qtbot.waitUntil(lambda: dmdesk_llm_server.stats.requests >= 2, timeout=30_000)
    started = time.monotonic()
    with qtbot.waitSignal(win.page.job_finished, timeout=5_000):
        win.click("stopButton")
    assert time.monotonic() - started < 2.0
    text = win.widget("progressLabel").text()
    assert "stopped" in text and "Proceed" in text and "failed" not in text.lower()
    assert TrainingRunService(win.ctx).get_run(1).status is RunStatus.GENERATING_FAILED


def test_the_open_row_stays_open_and_a_collapse_by_key_is_respected(
    qtbot, failed_generation
) -> None:
    win = failed_generation(chunks=6, fail_after=2)
    view = win.page.history
    qtbot.waitUntil(lambda: view.expanded_run_id() == 1, timeout=5_000)  # opened for the admin
    view.open_run(1)  # idempotent: stays open (a toggle used to close it)
    assert view.isExpanded(win.row_of(1))
    view.setCurrentIndex(win.row_of(1))
    qtbot.keyClick(view, Qt.Key.Key_Left)  # collapse through C++
    assert not view.isExpanded(win.row_of(1)) and view.expanded_run_id() is None
    win.page.reload()
    qtbot.wait(1_500)  # a watcher poll and a refresh: the row must not reopen
    assert not view.isExpanded(win.row_of(1))


def test_geometry_is_remembered(qtbot, dmdesk_window) -> None:
    win = dmdesk_window(chunks=3)
    win.window.resize(750, 540)  # the offscreen screen is 800 × 600
    assert win.close()
    again = dmdesk_window(chunks=3)
    assert (again.window.size().width(), again.window.size().height()) == (750, 540)
    assert again.window.minimumSize().width() >= 700


def test_keyboard_reaches_proceed_from_a_row_and_arrows_skip_the_actions_line(
    qtbot, failed_generation
) -> None:
    """Before: Proceed/Delete only after ~10 Tabs through Settings, and Down from an open row
    landed on the hidden actions line."""
    win = failed_generation(chunks=4, fail_after=1)
    view = win.page.history
    view.open_run(1)
    view.setFocus()
    view.setCurrentIndex(win.row_of(1))
    qtbot.keyClick(view, Qt.Key.Key_Tab)
    focused = QApplication.focusWidget()
    assert isinstance(focused, QPushButton) and focused.objectName() == "proceedButton"
    view.setFocus()
    view.setCurrentIndex(win.row_of(1))
    qtbot.keyClick(view, Qt.Key.Key_Down)
    assert view.currentIndex() == win.row_of(1)  # the only run: Down stays on it
    assert view.currentIndex().parent().isValid() is False


def test_a_watcher_whose_coroutine_dies_says_so_restarts_and_shows_changes_again(
    qtbot, dmdesk_window
) -> None:
    """Issue 26: the live view cannot stop unseen. Its coroutine is cancelled from outside (as
    the shipped loop's start used to do): the supervisor says so, starts a new one, and a run
    made elsewhere shows again within 2 s."""
    from dmdesk.ui.live import PAUSED
    from tests.helpers import insert_run

    win = dmdesk_window(chunks=3)
    watcher = win.page.watcher
    states: list[str] = []
    watcher.health_changed.connect(states.append)
    qtbot.wait(300)
    watcher._task.cancel()
    qtbot.waitUntil(lambda: watcher.restarts == 1, timeout=3_000)
    assert states[0] == PAUSED
    qtbot.waitUntil(lambda: states[-1] == "", timeout=3_000)
    assert not win.page.live_label.isVisible()
    insert_run(win.ctx, "generated", owner="other-process")
    qtbot.waitUntil(lambda: win.page.history_model.rowCount() == 1, timeout=2_000)


def test_reads_that_fail_for_a_while_show_paused_then_live_again(
    qtbot, dmdesk_window, monkeypatch
) -> None:
    from dmdesk.ui.live import PAUSED
    from tests.helpers import insert_run

    win = dmdesk_window(chunks=3)
    reader = win.page.watcher._reader
    real_read = reader.read
    until = time.monotonic() + 4.5

    def failing(force: bool):
        if time.monotonic() < until:
            raise OSError("database is locked")
        return real_read(force)

    monkeypatch.setattr(reader, "read", failing)
    label = win.page.live_label
    qtbot.waitUntil(label.isVisible, timeout=4_500)  # after 3 s without a successful read
    assert label.text() == PAUSED
    insert_run(win.ctx, "generated", owner="other-process")
    qtbot.waitUntil(lambda: not label.isVisible(), timeout=4_000)
    qtbot.waitUntil(lambda: win.page.history_model.rowCount() == 1, timeout=2_000)


def test_ctrl_q_quits_through_the_same_close_protocol(
    qtbot, dmdesk_window, dmdesk_llm_server: FakeLLMServer
) -> None:
    """File → Quit (Ctrl+Q): during a run it asks as the window manager's close does (Cancel
    keeps everything); Stop and close then ends the run resumable and closes. A window with no
    window manager (kiosk, VNC, bare X) can be quit by key."""
    from PySide6.QtGui import QAction

    win = generating_window(qtbot, dmdesk_window, dmdesk_llm_server, chunks=25, latency=0.2)
    w = win.window
    action = w.findChild(QAction, "quitAction")
    assert action is not None and action.shortcut().toString() == "Ctrl+Q"
    qtbot.keyClick(w, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    answer_close(qtbot, w, "cancel")
    assert w.isVisible() and w.page.job_running
    qtbot.keyClick(w, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    answer_close(qtbot, w, "stopAndCloseButton")
    qtbot.waitUntil(lambda: not w.isVisible(), timeout=15_000)
    (run,) = TrainingRunService(win.ctx).list_runs()
    assert run.status is RunStatus.GENERATING_FAILED


def test_ctrl_q_closes_an_idle_window_at_once(qtbot, dmdesk_window) -> None:
    win = dmdesk_window(chunks=3)
    qtbot.keyClick(win.window, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not win.window.isVisible(), timeout=5_000)
