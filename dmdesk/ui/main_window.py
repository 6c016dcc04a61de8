"""The main window: the Deep Memory page, and a close that never loses a running run."""

from __future__ import annotations

import os
import sys

from PySide6.QtCore import QSettings, Qt, QTimer, QUrl, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDesktopServices, QKeySequence
from PySide6.QtWidgets import QApplication, QMainWindow, QMessageBox

from dmdesk import app as app_start
from dmdesk import demo as demo_store
from dmdesk.config import DmdeskConfig, SettingsFileBroken, config_file
from dmdesk.domain.errors import EXIT_USAGE, DmdeskError
from dmdesk.services.context import ServiceContext
from dmdesk.ui import aio
from dmdesk.ui.deep_memory_page import DeepMemoryPage
from dmdesk.ui.demo_build import DemoStoreBuild
from dmdesk.ui.resources import icon
from dmdesk.ui.workers import (
    GuiThreadCollector,
    apply_responsiveness_policy,
)


class MainWindow(QMainWindow):
    """Closing during a run asks: *Stop and close* (the run becomes failed and resumable),
    *Keep running in the background* (a detached dmdesk process goes on with it; the next
    window shows it live), or *Cancel*. The question is window-modal and answered by a signal,
    not a nested loop; while the job stops, the window says so and further closes are ignored;
    it closes itself once the worker has finished — a QThread is never destroyed running."""

    STOP, BACKGROUND, CANCEL = "stop", "background", "cancel"

    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__()
        self.setObjectName("mainWindow")
        self.setWindowTitle("dmdesk — Deep Memory")
        self.setWindowIcon(icon("brain"))
        self.page = DeepMemoryPage(ctx)
        self.setCentralWidget(self.page)
        self.setMinimumSize(720, 520)
        self.resize(1000, 760)
        self.ask_before_stopping = True
        self._closing = False  # the admin chose to close: waiting for the job to end
        self._close_box: QMessageBox | None = None
        self.demo_build: DemoStoreBuild | None = None  # the demo's first start (follow_demo_build)
        self.page.job_finished.connect(self._on_job_finished)
        file_menu = self.menuBar().addMenu("&File")
        evaluation = QAction("&Evaluation set…", self)
        evaluation.setObjectName("evaluationSetAction")
        evaluation.setStatusTip(
            "Save real questions (CSV question,chunk_id or BEIR queries + qrels) as the store's "
            "evaluation set: every training run is judged on them"
        )
        evaluation.triggered.connect(self.page.import_evaluation_set)
        file_menu.addAction(evaluation)
        settings = QAction("&Settings…", self)
        settings.setObjectName("settingsAction")
        # The Settings card is the page's last card, below the fold at the default size
        # (issue 26): this brings it into view with its first field focused. Ctrl+, is the
        # platform's Preferences key where it has one.
        settings.setShortcut(QKeySequence(QKeySequence.StandardKey.Preferences))
        if settings.shortcut().isEmpty():
            settings.setShortcut(QKeySequence("Ctrl+,"))
        settings.setMenuRole(QAction.MenuRole.PreferencesRole)
        settings.triggered.connect(self.page.show_settings)
        file_menu.addAction(settings)
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setObjectName("quitAction")
        # Ctrl+Q (the platform's standard key); the same close protocol as the window
        # manager's close button — a running job is asked about first (closeEvent).
        quit_action.setShortcut(QKeySequence(QKeySequence.StandardKey.Quit))
        if quit_action.shortcut().isEmpty():  # some platforms define none (Windows)
            quit_action.setShortcut(QKeySequence("Ctrl+Q"))
        quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        view = self.menuBar().addMenu("&View")
        refresh = QAction("&Refresh", self)
        refresh.setObjectName("refreshAction")
        refresh.setShortcut(QKeySequence(QKeySequence.StandardKey.Refresh))  # F5
        refresh.setStatusTip("Read everything again now")
        refresh.triggered.connect(self.page.reload)
        view.addAction(refresh)
        # Window geometry lives next to the settings file (DMDESK_CONFIG_FILE's folder), so a
        # test or a second profile never touches the user's own.

        self._settings = QSettings(
            str(config_file().with_name("window.ini")), QSettings.Format.IniFormat
        )
        geometry = self._settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)

    def follow_demo_build(self, build: DemoStoreBuild, config: DmdeskConfig) -> None:
        """The demo's store is built by a process of its own while this window is open; once
        it is there, the demo's settings are saved (dmdesk.demo.finish_demo) and the page
        reads everything again. `config` is the configuration before the demo's was applied."""
        build.setParent(self)
        self.demo_build = build
        build.progressed.connect(self.page.show_preparing)

        def ended(error: str) -> None:
            if not error:
                try:
                    self.page.end_preparing(demo_store.finish_demo(config))
                    return
                except DmdeskError as exc:
                    error = exc.message
            print(f"dmdesk: the demo knowledge base could not be built: {error}", file=sys.stderr)
            self.page.end_preparing(None, error)
            self.page.show_error("The demo could not be prepared", error)

        build.ended.connect(ended)
        self.page.show_preparing(build.done, build.total, build.step)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.page.job_running:
            event.ignore()
            if self._closing:
                return  # already stopping: one answer is enough
            if not self.ask_before_stopping:
                self._close_as(self.STOP)
            elif self._close_box is None:
                self._ask_how_to_close()
            return
        self._settings.setValue("window/geometry", self.saveGeometry())
        if self.demo_build is not None:
            self.demo_build.cancel()  # a build cut short leaves nothing; the next start builds
        self.page.watcher.stop()
        self.page.settings_card.stop()
        self.page.stop_tasks()
        self.page.search_card.stop()
        event.accept()

    def _ask_how_to_close(self) -> None:
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "A run is in progress",
            "A run is in progress. Stop it and close dmdesk — the run can be resumed later "
            "with Proceed, nothing done so far is lost — or let it go on in the background "
            "(the next dmdesk window shows it)?",
            QMessageBox.StandardButton.NoButton,
            self,
        )
        box.setObjectName("closeRunningBox")
        stop = box.addButton("Stop and close", QMessageBox.ButtonRole.DestructiveRole)
        stop.setObjectName("stopAndCloseButton")
        keep = box.addButton("Keep running in the background", QMessageBox.ButtonRole.AcceptRole)
        keep.setObjectName("keepRunningButton")
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(cancel)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        choices = {stop: self.STOP, keep: self.BACKGROUND}

        def answered(button: object) -> None:
            self._close_box = None
            self._close_as(choices.get(button, self.CANCEL))  # type: ignore[call-overload]

        box.buttonClicked.connect(answered)
        box.rejected.connect(lambda: setattr(self, "_close_box", None))
        self._close_box = box
        box.open()

    def _close_as(self, choice: str) -> None:
        if choice == self.CANCEL or not self.page.job_running:
            if choice != self.CANCEL:
                self.close()
            return
        self._closing = True
        if choice == self.BACKGROUND:
            self.page.hand_over_job()
        else:
            self.page.stop_job()

    @Slot(object)
    def _on_job_finished(self, _final: object) -> None:
        if self._closing:
            self._closing = False
            QTimer.singleShot(0, self.close)


def _display_problem() -> str | None:
    if sys.platform.startswith("linux") and not os.environ.get("QT_QPA_PLATFORM"):
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return (
                "No display found (DISPLAY and WAYLAND_DISPLAY are unset). Run dmdesk in a "
                "desktop session, use the command line (dmdesk --help), or set "
                "QT_QPA_PLATFORM=offscreen."
            )
    return None


def ask_about_broken_settings(problem: SettingsFileBroken) -> bool:
    """The settings file cannot be read: say which line, and let the admin go on without it
    (the file stays as it is; Save in Settings offers to replace it, keeping a backup), open it
    to fix it, or quit. True: go on."""
    box = QMessageBox(
        QMessageBox.Icon.Warning,
        "dmdesk: the settings file cannot be read",
        problem.message,
    )
    box.setObjectName("brokenSettingsBox")
    box.setInformativeText(
        "Continue: dmdesk starts with the environment's and the default settings and leaves "
        "the file untouched. Open the file: fix it, then start dmdesk again."
    )
    go_on = box.addButton("Continue without it", QMessageBox.ButtonRole.AcceptRole)
    open_it = box.addButton("Open the file", QMessageBox.ButtonRole.ActionRole)
    box.addButton("Quit", QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(go_on)
    box.exec()
    if box.clickedButton() is open_it:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(problem.path)))
    return box.clickedButton() is go_on


def run_gui(
    config: DmdeskConfig,
    *,
    smoke: bool = False,
    demo: bool = False,
    settings_problem: SettingsFileBroken | None = None,
) -> int:

    problem = _display_problem()
    if problem:
        print(f"dmdesk: {problem}", file=sys.stderr)
        return EXIT_USAGE
    existing = QApplication.instance()
    qapp = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    qapp.setApplicationName("dmdesk")
    # Correctness, not tuning: widgets must never be collected on a job thread.
    collector = GuiThreadCollector(parent=qapp)  # noqa: F841 (kept by its parent)
    if os.environ.get("DMDESK_GUI_TUNING", "1") != "0":
        # Interpreter-wide (GC thresholds, GIL switch interval): applied once, here, for the
        # GUI process only — never from a widget's constructor (DMDESK_GUI_TUNING=0: off).
        apply_responsiveness_policy()
    if settings_problem is not None:
        print(f"dmdesk: {settings_problem.message}", file=sys.stderr)
        if not ask_about_broken_settings(settings_problem):
            return EXIT_USAGE
    # The demo's first start opens the window at once and builds the store behind it
    # (issue 26: 51 s to a window when the build came first); later starts find it built.
    build: DemoStoreBuild | None = None
    if demo and not demo_store.store_ready(config):
        print(
            "dmdesk: first start: preparing the demo knowledge base (Python's reference "
            "topics, embedded locally; about half a minute); the window opens meanwhile",
            file=sys.stderr,
            flush=True,
        )
        build = DemoStoreBuild()
        build.start()  # at once: its model loads while the window is set up
    original = config
    if demo:
        config = demo_store.finish_demo(config) if build is None else demo_store.demo_config(config)
    try:
        ctx = app_start.start(config)
    except DmdeskError as exc:
        if build is not None:
            build.cancel()
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
    if build is not None:
        window.follow_demo_build(build, original)
    if smoke:  # for CI and bundle checks: prove the window comes up, then leave
        smoke_code = [0]

        def leave() -> None:
            if window.demo_build is not None and window.demo_build.running:
                return  # the demo's store is still being built: leave once it is
            if window.demo_build is not None and window.page.workflow.preparing:
                smoke_code[0] = 1  # the build failed (the card says why)
            ready = window.page.workflow.generate_button.isEnabled()
            print(f"dmdesk: ready (Generate {'enabled' if ready else 'held'})", flush=True)
            qapp.quit()

        def shown() -> None:
            print(f"dmdesk: window shown ({window.windowTitle()})", flush=True)
            if window.demo_build is not None:
                window.demo_build.ended.connect(lambda _error: QTimer.singleShot(0, leave))
            leave()

        QTimer.singleShot(300, shown)
        try:
            code = aio.run(qapp)
            return code or smoke_code[0]
        finally:
            ctx.dispose()
    try:
        return aio.run(qapp)  # the Qt event loop, with asyncio on it (qasync)
    finally:
        ctx.dispose()
