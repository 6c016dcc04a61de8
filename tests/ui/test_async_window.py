"""Issue 11: the window's short I/O is coroutines on the GUI's qasync loop — the run watcher, the
keyring and settings reads and writes, the LLM connection test — and the GUI thread never does
it itself."""

from __future__ import annotations

import asyncio
import threading

import keyring
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction

from dmdesk.testing.llm_server import FakeLLMServer
from dmdesk.testing.plugin import MemoryKeyring
from dmdesk.ui import aio


class SlowThreadRecordingKeyring(MemoryKeyring):
    """Records the thread of every lookup (and takes its time, as a locked keyring does)."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def get_password(self, service: str, username: str) -> str | None:
        self.threads.append(threading.current_thread().name)
        threading.Event().wait(0.2)
        return super().get_password(service, username)


@pytest.fixture
def recording_keyring() -> SlowThreadRecordingKeyring:
    backend = SlowThreadRecordingKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def test_the_window_runs_its_watcher_as_a_coroutine_on_the_qt_loop(dmdesk_window) -> None:
    win = dmdesk_window(chunks=3)
    loop = aio.loop()
    assert asyncio.events._get_running_loop() is loop  # qasync: asyncio runs on Qt's loop
    names = {t.get_name() for t in asyncio.all_tasks(loop)}
    assert "dmdesk run watcher" in names
    assert win.page.watcher._task is not None and not win.page.watcher._task.done()


def test_keyring_lookups_never_run_on_the_gui_thread(
    qtbot, dmdesk_window, recording_keyring: SlowThreadRecordingKeyring
) -> None:
    win = dmdesk_window(chunks=3)
    card = win.page.settings_card
    qtbot.waitUntil(
        lambda: "Questions are written by" in card.generator_label.text(), timeout=5_000
    )
    qtbot.keyClick(win.window, Qt.Key.Key_F5)  # View → Refresh
    card.openai_key_edit.setText("sk-typed-key-123")
    with qtbot.waitSignal(card.settings_saved, timeout=5_000):
        win.click("saveSettingsButton")
    qtbot.waitUntil(lambda: not card.busy, timeout=5_000)
    assert recording_keyring.threads, "the keyring was not read at all"
    gui = threading.main_thread().name
    assert gui not in recording_keyring.threads, recording_keyring.threads


def test_test_connection_reports_the_llm_answering(
    qtbot, dmdesk_window, dmdesk_llm_server: FakeLLMServer
) -> None:
    dmdesk_llm_server.configure(latency_s=1.0)
    win = dmdesk_window(chunks=3)
    card = win.page.settings_card
    win.click("testConnectionButton")
    # the click returned before the 1 s answer: the window is not waiting for it
    assert card.connection_label.text() == "Testing…"
    assert not card.test_button.isEnabled()
    qtbot.waitUntil(lambda: card.connection_label.text().startswith("Connected"), timeout=10_000)
    assert "test-model" in card.connection_label.text()
    assert card.test_button.isEnabled()
    assert dmdesk_llm_server.stats.requests == 1


def test_test_connection_names_a_refused_key_and_an_unreachable_server(
    qtbot, dmdesk_window, dmdesk_llm_server: FakeLLMServer
) -> None:
    dmdesk_llm_server.configure(fail_after=0, fail_status=401)
    win = dmdesk_window(chunks=3)
    card = win.page.settings_card
    card.openai_key_edit.setText("sk-wrong-key-987654")
    win.click("testConnectionButton")
    qtbot.waitUntil(
        lambda: "refused the API key (401)" in card.connection_label.text(),
        timeout=10_000,
    )
    assert "sk-wrong" not in card.connection_label.text()
    card.base_url_edit.setText("http://127.0.0.1:9/v1")  # nothing listens there (unsaved)
    qtbot.mouseClick(card.test_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Cannot reach http://127.0.0.1:9/v1" in card.connection_label.text())


def test_closing_the_window_during_a_connection_test_leaves_nothing_behind(
    qtbot, dmdesk_window, dmdesk_llm_server: FakeLLMServer
) -> None:
    dmdesk_llm_server.configure(latency_s=5.0)
    win = dmdesk_window(chunks=3)
    win.click("testConnectionButton")
    qtbot.waitUntil(lambda: dmdesk_llm_server.stats.requests == 1, timeout=5_000)
    assert win.close()
    qtbot.wait(200)  # the cancelled test ends on the loop without touching a closed widget
    assert not win.page.settings_card.busy


def test_f5_reloads_what_another_process_changed(qtbot, dmdesk_window) -> None:
    """View → Refresh (F5) reads everything again at once, not at the next poll."""
    from tests.helpers import insert_run

    win = dmdesk_window(chunks=3)
    win.page.watcher._interval_s = 3600  # no poll would see it in this test's time
    qtbot.wait(300)  # the watcher's first read is done: it now sleeps
    insert_run(win.ctx, "generated", owner="other-process")
    assert win.page.history_model.rowCount() == 0
    qtbot.keyClick(win.window, Qt.Key.Key_F5)
    qtbot.waitUntil(lambda: win.page.history_model.rowCount() == 1, timeout=2_000)
    action = win.window.findChild(QAction, "refreshAction")
    assert action is not None and action.shortcut().toString() == "F5"


def test_a_read_older_than_the_windows_own_refresh_is_dropped(qtbot, dmdesk_window) -> None:
    """The watcher read the runs in a thread while this window's job ended and the window
    refreshed; that older read must not put the row back to "generating" (the screenshot tool
    found it: no Proceed on a run that had just stopped)."""
    import threading

    from sqlalchemy import text

    from dmdesk.domain.status import RunStatus
    from tests.helpers import insert_run

    win = dmdesk_window(chunks=3)
    run_id = insert_run(win.ctx, "generating", owner="other-process")
    reader = win.page.watcher._reader
    real_read = reader.read
    started, release = threading.Event(), threading.Event()

    def slow_first_read(force: bool):
        runs = reader.runs.list_runs()  # the state now: "generating"
        started.set()
        release.wait(10)
        reader.read = real_read
        return runs

    reader.read = slow_first_read
    qtbot.wait(1_200)  # the sleeping watcher wakes up and starts the slow read
    qtbot.waitUntil(started.is_set, timeout=5_000)
    with win.ctx.engine.begin() as c:
        c.execute(
            text("UPDATE deep_memory_training_runs SET status = 'generating_failed' WHERE id = :i"),
            {"i": run_id},
        )
    win.page.refresh()
    assert win.page.history_model.runs()[0].status is RunStatus.GENERATING_FAILED
    release.set()
    qtbot.wait(300)  # the stale result arrives (the next regular read is a second away)
    assert win.page.history_model.runs()[0].status is RunStatus.GENERATING_FAILED


def test_the_selected_runs_llm_usage_and_cost_show_under_the_history(
    qtbot, dmdesk_window, dmdesk_llm_server: FakeLLMServer
) -> None:
    """Issue 13: tokens and cost in the History's details."""
    win = dmdesk_window(chunks=5, llm_model="gpt-4o-mini")
    win.click("generateButton")
    win.wait_for_status(1, "generated")
    win.page.history.setCurrentIndex(win.row_of(1))
    label = win.widget("runUsage")
    qtbot.waitUntil(label.isVisible, timeout=3_000)
    tokens = f"{dmdesk_llm_server.stats.prompt_tokens:,} tokens in"
    assert tokens in label.text() and "$" in label.text()


def test_the_workflow_card_shows_the_estimate_and_the_settings_card_the_budget_and_mode(
    qtbot, dmdesk_window, dmdesk_llm_server: FakeLLMServer, monkeypatch
) -> None:
    """Issue 13: a new run's tokens and cost beside Generate (no LLM call), recomputed when the
    settings change; the budget and the Batch API choice are Settings fields."""
    monkeypatch.setenv("DMDESK_LLM_PRICE_PER_MTOK", "0.15,0.60")
    win = dmdesk_window(chunks=12)
    label = win.page.workflow.estimate_label
    qtbot.waitUntil(lambda: label.text().startswith("Estimate: 12 chunks"), timeout=5_000)
    assert label.isVisible() and "$" in label.text()
    card = win.page.settings_card
    card.budget_spin.setValue(2.5)
    card.mode_combo.setCurrentIndex(card.mode_combo.findData("batch"))
    with qtbot.waitSignal(card.settings_saved, timeout=5_000):
        win.click("saveSettingsButton")
    assert win.ctx.config.budget_usd == 2.5 and win.ctx.config.llm_mode == "batch"
    qtbot.waitUntil(lambda: "Batch API" in label.text(), timeout=5_000)
    assert dmdesk_llm_server.stats.requests == 0


def test_batch_mode_in_the_window_shows_the_batches_and_stop_cancels_them(
    qtbot, dmdesk_window, dmdesk_llm_server: FakeLLMServer
) -> None:
    """Issue 13, as an admin sees it: Generate in batch mode says the batches are waiting for
    the provider, with their answered requests as progress; Stop cancels them and leaves a run
    that Proceed finishes."""
    dmdesk_llm_server.configure(batch_delay_s=6.0)
    win = dmdesk_window(
        chunks=30,
        llm_mode="batch",
        llm_model="gpt-4o-mini",
        batch_poll_interval_s=0.1,
        batch_max_requests=10,
    )
    win.click("generateButton")
    label = win.page.workflow.progress_label
    qtbot.waitUntil(lambda: "waiting for the provider" in label.text(), timeout=10_000)
    qtbot.waitUntil(lambda: win.page.workflow.progress_bar.value() > 0, timeout=10_000)
    win.click("stopButton")
    run = win.wait_for_status(1, "generating_failed")
    assert dmdesk_llm_server.stats.batches_cancelled == 3
    dmdesk_llm_server.configure(batch_delay_s=0.0)
    win.expand_row(1)
    win.press_row_button(1, "proceedButton")
    run = win.wait_for_status(1, "generated")
    assert run.pair_count == 30
    assert win.pair_counts(1) == dict.fromkeys(win.chunk_ids, 1)


def test_a_broken_settings_file_survives_a_save_from_the_window_unless_replaced(
    qtbot, dmdesk_window, monkeypatch
) -> None:
    """Save never overwrites a file that cannot be read: Cancel leaves it byte for byte and
    says why; Replace keeps it as a backup and writes the new settings."""
    from dmdesk.config import config_file
    from dmdesk.ui.settings_card import SettingsCard

    win = dmdesk_window(chunks=3)
    card = win.page.settings_card
    path = config_file()
    broken = b'questions_per_chunk = 2\nllm_model = "a\nb"\n'
    path.write_bytes(broken)
    answers: list[bool] = [False]
    asked: list[str] = []

    def confirm(self, problem) -> bool:
        asked.append(problem.message)
        return answers[0]

    monkeypatch.setattr(SettingsCard, "confirm_replace_broken", confirm)
    card.model_edit.setText("model-from-the-window")
    win.click("saveSettingsButton")
    qtbot.waitUntil(lambda: bool(asked) and not card.busy, timeout=5_000)
    assert "line 2" in asked[0]
    assert path.read_bytes() == broken
    qtbot.waitUntil(lambda: "cannot be read" in card.error_label.text(), timeout=5_000)
    answers[0] = True
    with qtbot.waitSignal(card.settings_saved, timeout=5_000):
        win.click("saveSettingsButton")
    import tomllib

    assert tomllib.loads(path.read_text())["llm_model"] == "model-from-the-window"
    backups = list(path.parent.glob("config.toml.broken-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == broken


def test_the_window_starts_past_a_broken_settings_file_only_when_the_admin_says_so(
    qtbot, dmdesk_config, monkeypatch, capsys
) -> None:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    from dmdesk.config import SettingsFileBroken, config_file
    from dmdesk.domain.errors import EXIT_USAGE
    from dmdesk.ui.main_window import ask_about_broken_settings, run_gui

    config = dmdesk_config()  # what the CLI loads without the file (load_config(use_file=False))
    path = config_file()
    path.write_bytes(b"llm_model = \n")
    problem = SettingsFileBroken(path, "not valid TOML (Invalid value (at line 1, column 13))")
    seen: list[str] = []

    def answer(button: str) -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox) and box.objectName() == "brokenSettingsBox":
            seen.append(box.text())
            next(b for b in box.buttons() if b.text() == button).click()
        else:
            QTimer.singleShot(50, lambda: answer(button))

    QTimer.singleShot(50, lambda: answer("Quit"))
    assert run_gui(config, settings_problem=problem) == EXIT_USAGE
    assert seen and "line 1" in seen[0]
    assert "line 1" in capsys.readouterr().err  # said on stderr too, for a terminal
    # (run_gui's own loop is not run past the dialog here: its quit would end later tests' loops)
    QTimer.singleShot(50, lambda: answer("Continue without it"))
    assert ask_about_broken_settings(problem) is True
    assert path.read_bytes() == b"llm_model = \n"
