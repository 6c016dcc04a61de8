"""The main window: the Deep Memory page, and a close that never loses a running run."""

from __future__ import annotations

import os
import sys

from PySide6.QtCore import QEventLoop, QObject, Signal, Slot
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QApplication, QMainWindow, QMessageBox

from dmdesk.config import DmdeskConfig
from dmdesk.domain.errors import EXIT_USAGE, DmdeskError
from dmdesk.services.context import ServiceContext
from dmdesk.ui.deep_memory_page import DeepMemoryPage
from dmdesk.ui.resources import icon
from dmdesk.ui.workers import TaskWorker, apply_responsiveness_policy, start_in_thread


class MainWindow(QMainWindow):
    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__()
        self.setObjectName("mainWindow")
        self.setWindowTitle("dmdesk — Deep Memory")
        self.setWindowIcon(icon("brain"))
        self.page = DeepMemoryPage(ctx)
        self.setCentralWidget(self.page)
        self.resize(1000, 760)
        self.ask_before_stopping = True
        apply_responsiveness_policy()

    def closeEvent(self, event: QCloseEvent) -> None:
        """Closing during a run asks whether to stop it; a stopped run stays resumable."""
        if self.page.job_running:
            if self.ask_before_stopping:
                answer = QMessageBox.question(
                    self,
                    "A run is in progress",
                    "Stop the running job and close dmdesk? The run becomes failed and can be "
                    "resumed later with Proceed; nothing done so far is lost.",
                    QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                    QMessageBox.StandardButton.No,
                )
                if answer != QMessageBox.StandardButton.Yes:
                    event.ignore()
                    return
            self.page.stop_job(wait=True)
        self.page.search_card.wait_idle()
        event.accept()


def _display_problem() -> str | None:
    if sys.platform.startswith("linux") and not os.environ.get("QT_QPA_PLATFORM"):
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return (
                "No display found (DISPLAY and WAYLAND_DISPLAY are unset). Run dmdesk in a "
                "desktop session, use the command line (dmdesk --help), or set "
                "QT_QPA_PLATFORM=offscreen."
            )
    return None


class _DemoBuild(QObject):
    """Builds the demo store in a worker while a progress dialog shows it (first start only).
    Its methods are the slots of the worker's signals, so they run in the GUI thread."""

    progressed = Signal(int, int, str)

    def __init__(self, config: DmdeskConfig) -> None:
        super().__init__()
        from PySide6.QtWidgets import QProgressDialog

        from dmdesk.demo import ensure_demo

        self.result: DmdeskConfig | None = None
        self.error: str | None = None
        self.dialog = QProgressDialog("Preparing the demo knowledge base…", "", 0, 0)
        self.dialog.setWindowTitle("dmdesk demo")
        self.dialog.setCancelButton(None)
        self.dialog.setMinimumDuration(0)
        self.loop = QEventLoop()
        self.progressed.connect(self._on_progressed)
        self.worker = TaskWorker(lambda: ensure_demo(config, self.progressed.emit))
        self.worker.done.connect(self._on_worker_done)
        self.worker.failed.connect(self._on_worker_failed)
        self.worker.finished.connect(self.loop.quit)

    def run(self) -> DmdeskConfig | None:
        self.dialog.show()
        thread = start_in_thread(self.worker, self)
        self.loop.exec()
        thread.wait()
        self.dialog.close()
        return self.result

    @Slot(int, int, str)
    def _on_progressed(self, done: int, total: int, message: str) -> None:
        self.dialog.setMaximum(total)
        self.dialog.setValue(done)
        self.dialog.setLabelText(f"{message}… {done}/{total}")

    @Slot(object)
    def _on_worker_done(self, config: DmdeskConfig) -> None:
        self.result = config

    @Slot(str)
    def _on_worker_failed(self, message: str) -> None:
        self.error = message


def build_demo_with_dialog(config: DmdeskConfig) -> DmdeskConfig | None:
    """The demo configuration; builds the demo store first (with a progress dialog) if needed."""
    from dmdesk.demo import demo_store_path, ensure_demo

    if (demo_store_path(config) / "dataset_meta.json").is_file():
        return ensure_demo(config)
    build = _DemoBuild(config)
    result = build.run()
    if result is None:
        QMessageBox.critical(None, "The demo could not be prepared", build.error or "Unknown error")
    return result


def run_gui(config: DmdeskConfig, *, smoke: bool = False, demo: bool = False) -> int:
    from dmdesk import app as app_start

    problem = _display_problem()
    if problem:
        print(f"dmdesk: {problem}", file=sys.stderr)
        return EXIT_USAGE
    qapp = QApplication.instance() or QApplication(sys.argv[:1])
    qapp.setApplicationName("dmdesk")
    if demo:
        demo_config = build_demo_with_dialog(config)
        if demo_config is None:
            return 1
        config = demo_config
    try:
        ctx = app_start.start(config)
    except DmdeskError as exc:
        # Said in a dialog (a desktop launcher has no terminal) and on stderr, in one line.
        print(f"dmdesk: {exc.message}", file=sys.stderr)
        box = QMessageBox(
            QMessageBox.Icon.Critical,
            "dmdesk cannot start",
            exc.message,
            QMessageBox.StandardButton.Ok,
        )
        box.setObjectName("startupErrorBox")
        box.exec()
        return exc.exit_code
    window = MainWindow(ctx)
    window.show()
    if smoke:  # for CI and bundle checks: prove the window comes up, then leave
        from PySide6.QtCore import QTimer

        def shown() -> None:
            print(f"dmdesk: window shown ({window.windowTitle()})", flush=True)
            qapp.quit()

        QTimer.singleShot(300, shown)
    try:
        return qapp.exec()
    finally:
        ctx.dispose()
