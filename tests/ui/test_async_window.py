"""Issue 11: the window's short I/O is coroutines on the GUI's qasync loop — the run watcher, the
keyring and settings reads and writes, the LLM connection test — and the GUI thread never does
it itself."""

from __future__ import annotations

import asyncio
import threading

import keyring
import pytest
from PySide6.QtCore import Qt

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
    win.page.reload()  # F5
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
