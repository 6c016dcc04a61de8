"""The driver behind the `dmdesk_window` fixture (dmdesk.testing.plugin): the real main window,
and what a tester does with it — find widgets by their contract names, click, open a History row
and press its buttons, answer a confirmation, and wait on real state instead of sleeping. It
lives here because Qt is imported only under dmdesk/ui."""

from __future__ import annotations

from collections import Counter
from typing import Any

from PySide6.QtCore import Qt, QThread
from PySide6.QtWidgets import QApplication, QMessageBox, QPushButton, QWidget

from dmdesk.services.runs import TrainingRunService
from dmdesk.ui.history_model import COL_STATUS, STATUS_TEXT, STOPPED_TEXT

DEFAULT_WAIT_MS = 60_000


class WindowDriver:
    """The main window, and what a tester does with it. Every wait polls the real state."""

    def __init__(self, qtbot: Any, window: Any, ctx: Any, chunk_ids: list[str]) -> None:

        self.qtbot = qtbot
        self.window = window
        self.page = window.page
        self.ctx = ctx
        self.runs = TrainingRunService(ctx)
        self.chunk_ids = chunk_ids

    # -- finding --------------------------------------------------------------------------------

    def widget(self, name: str) -> Any:
        """The visible widget with this object name, in the window or one of its dialogs."""
        for top in [self.window, *QApplication.topLevelWidgets()]:
            found = top if top.objectName() == name else top.findChild(QWidget, name)
            if found is not None and found.isVisible():
                return found
        raise LookupError(f"no visible widget named {name!r}")

    def row_of(self, run_id: int) -> Any:
        index = self.page.history_model.row_of(run_id)
        if not index.isValid():
            raise LookupError(f"run #{run_id} is not in the Training History")
        return index

    def row_text(self, run_id: int, column: int = COL_STATUS) -> str:
        """The text of a History cell of the run (its Status by default)."""
        return str(self.row_of(run_id).siblingAtColumn(column).data())

    # -- acting ---------------------------------------------------------------------------------

    def click(self, name: str, timeout_ms: int = 5000) -> None:
        """Click the named widget once it is visible and enabled (as a person waits for a
        button that the window is about to enable); fails saying why it never was."""
        found: list[Any] = []

        def ready() -> bool:
            try:
                widget = self.widget(name)
            except LookupError:
                return False
            found.append(widget)
            return bool(widget.isEnabled())

        try:
            self.qtbot.waitUntil(ready, timeout=timeout_ms)
        except Exception:
            if not found:
                raise LookupError(f"no visible widget named {name!r}") from None
            widget = found[-1]
            why = widget.toolTip() or getattr(widget, "text", lambda: "")()
            raise AssertionError(f"{name!r} stayed disabled: {why}") from None
        self.qtbot.mouseClick(found[-1], Qt.MouseButton.LeftButton)

    def expand_row(self, run_id: int) -> Any:
        """Open the run's row (a click on it, as a person would); returns its actions area."""
        view = self.page.history
        if view.expanded_run_id() != run_id:
            rect = view.visualRect(self.row_of(run_id))
            self.qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        self.qtbot.waitUntil(lambda: view.actions_widget(run_id) is not None, timeout=5000)
        return view.actions_widget(run_id)

    def press_row_button(self, run_id: int, name: str) -> None:
        """Press Proceed / Delete / Refresh (`proceedButton`, `deleteButton`, `refreshButton`)
        in the run's open row."""
        actions = self.expand_row(run_id)
        button = actions.findChild(QPushButton, name)
        if button is None:
            raise LookupError(f"run #{run_id}'s row has no {name!r}")
        self.qtbot.mouseClick(button, Qt.MouseButton.LeftButton)

    def answer(self, box_name: str, button: str = "Yes") -> None:
        """Answer a confirmation box (`confirmRemoveBox`, …) with its Yes / Cancel / Ok button."""
        found: list[Any] = []

        def shown() -> bool:
            box = self.window.findChild(QMessageBox, box_name)
            if box is not None and box.isVisible():
                found.append(box)
                return True
            return False

        self.qtbot.waitUntil(shown, timeout=5000)
        which = getattr(QMessageBox.StandardButton, button)
        self.qtbot.mouseClick(found[-1].button(which), Qt.MouseButton.LeftButton)

    # -- waiting --------------------------------------------------------------------------------

    def wait_for_status(self, run_id: int, status: str, timeout_ms: int = DEFAULT_WAIT_MS) -> Any:
        """Until the run has `status` in the database, no job is running in the window, and the
        History shows it; returns the run."""

        def reached() -> bool:
            try:
                run = self.runs.get_run(run_id)
            except Exception:
                return False
            if run.status.value != status or self.page.job_running:
                return False
            self.page.refresh()
            shown = STOPPED_TEXT if run.stopped_by_admin else STATUS_TEXT
            return self.row_text(run_id).startswith(shown[run.status])

        try:
            self.qtbot.waitUntil(reached, timeout=timeout_ms)
        except Exception:
            now = self.runs.get_run(run_id)
            raise AssertionError(
                f"run #{run_id} did not become {status!r} in {timeout_ms} ms: it is "
                f"{now.status.value!r} ({now.error_message or 'no error'})"
            ) from None
        return self.runs.get_run(run_id)

    def wait_for_progress(self, value: int, timeout_ms: int = DEFAULT_WAIT_MS) -> None:
        bar = self.page.workflow.progress_bar
        self.qtbot.waitUntil(lambda: bar.value() >= value, timeout=timeout_ms)

    def wait_for_row_text(self, run_id: int, text: str, timeout_ms: int = DEFAULT_WAIT_MS) -> None:
        def shown() -> bool:
            self.page.refresh()
            return text in self.row_text(run_id)

        self.qtbot.waitUntil(shown, timeout=timeout_ms)

    # -- facts ----------------------------------------------------------------------------------

    def pair_counts(self, run_id: int) -> dict[str, int]:
        """How many pairs each chunk has in the run (exactly-once checks)."""
        return dict(Counter(p.chunk_id for p in self.runs.list_pairs(run_id)))

    # -- closing --------------------------------------------------------------------------------

    def close(self, timeout_ms: int = 30_000) -> bool:
        """Stop a running job, let searches and dialogs end, close the window. False if a
        QThread of the window was still running after `timeout_ms` (napari's guard)."""
        page = self.page
        if page.job_running:
            page.stop_job(wait=True)
        page.search_card.stop()
        dialog = getattr(page, "review_dialog", None)
        if dialog is not None:
            dialog.reject()

        def idle() -> bool:
            return not any(t.isRunning() for t in self.window.findChildren(QThread))

        try:
            self.qtbot.waitUntil(idle, timeout=timeout_ms)
        except Exception:
            return False
        finally:
            self.window.close()
        return True
