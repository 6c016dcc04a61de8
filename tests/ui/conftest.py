"""GUI fixtures: the real main window on a real SQLite database, offscreen (the window comes
from the public `dmdesk_window` fixture of dmdesk.testing.plugin)."""

from __future__ import annotations

import time

import pytest
import shiboken6
from PySide6.QtCore import QPoint, Qt, QThread
from PySide6.QtWidgets import QApplication, QMessageBox, QPushButton, QWidget

from dmdesk.services.context import ServiceContext
from dmdesk.ui.history_model import COL_PROGRESS
from dmdesk.ui.history_view import HistoryView, ProgressDelegate
from dmdesk.ui.main_window import MainWindow


@pytest.fixture(autouse=True)
def gui_thread_collector(qapp):
    """As `dmdesk gui` does: cyclic garbage is collected on the GUI thread only, never on a job
    thread (dmdesk.ui.workers.GuiThreadCollector); the interpreter's own collector is back
    after the test."""
    from dmdesk.ui.workers import GuiThreadCollector

    collector = GuiThreadCollector()
    yield collector
    collector.stop()
    collector.deleteLater()


@pytest.fixture(autouse=True)
def no_qthread_left_running(qtbot, monkeypatch: pytest.MonkeyPatch):
    """napari's guard: a test that leaves a QThread running fails (a thread outliving its
    window is what aborted dmdesk with 'QThread: Destroyed while thread is still running').
    Threads get 5 s to end after the test (and its windows' fixtures) have finished."""
    started: list[QThread] = []
    real_start = QThread.start

    def start(self: QThread, *args: object) -> None:
        started.append(self)
        real_start(self, *args)

    monkeypatch.setattr(QThread, "start", start)
    yield
    deadline = time.monotonic() + 5

    def running() -> list[QThread]:
        return [t for t in started if shiboken6.isValid(t) and t.isRunning()]

    while running() and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.02)
    left = running()
    from dmdesk.ui import aio

    aio.release()  # the GUI's asyncio loop (made by the first window) ends with the test
    assert not left, f"{len(left)} QThread(s) still running after the test"


@pytest.fixture
def window(dmdesk_window, ctx: ServiceContext) -> MainWindow:
    """The main window on `ctx`, through the public plugin's `dmdesk_window` (one harness):
    closed after the test, which fails if a QThread of it still runs."""
    return dmdesk_window(ctx=ctx).window


@pytest.fixture
def failed_generation(dmdesk_window, dmdesk_llm_server):
    """`failed_generation(chunks, fail_after)`: a window whose own generation (one LLM call at
    a time) failed after `fail_after` answers, its run #1 `generating_failed`. The LLM answers
    again afterwards, so Proceed can finish it."""

    def make(chunks: int, fail_after: int):
        dmdesk_llm_server.configure(fail_after=fail_after)
        win = dmdesk_window(chunks=chunks, generation_concurrency=1)
        win.click("generateButton")
        win.wait_for_status(1, "generating_failed")
        dmdesk_llm_server.configure(fail_after=None)
        return win

    return make


def click_row(qtbot, view: HistoryView, run_id: int) -> None:
    index = view.model().row_of(run_id)  # type: ignore[attr-defined]
    rect = view.visualRect(index)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def click_refresh_icon(qtbot, view: HistoryView, run_id: int) -> None:
    row = view.model().row_of(run_id).row()  # type: ignore[attr-defined]
    index = view.model().index(row, COL_PROGRESS)
    pos: QPoint = ProgressDelegate.icon_rect(view.visualRect(index)).center()
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)


def buttons_of(widget: QWidget) -> dict[str, QPushButton]:
    return {b.text(): b for b in widget.findChildren(QPushButton) if b.isVisibleTo(widget)}


def answer_box(qtbot, parent: QWidget, name: str, button: QMessageBox.StandardButton) -> None:
    box: QMessageBox | None = None

    def found() -> bool:
        nonlocal box
        box = parent.findChild(QMessageBox, name)
        return box is not None and box.isVisible()

    qtbot.waitUntil(found, timeout=3000)
    assert box is not None
    qtbot.mouseClick(box.button(button), Qt.MouseButton.LeftButton)
