"""The window's job lifecycle, in one object: start, progress, stop, hand over, end.

A `JobController` runs one job at a time. `start` performs a request (start generation, proceed,
start training) and then the run's job in a `JobWorker` thread (dmdesk.ui.workers); what the
worker reports comes back as this object's signals, in the GUI thread, in the order it was sent
(progress is throttled to ≤ 10 a second with a trailing edge). `stop` cancels cooperatively
(the run ends failed and resumable); `hand_over` lets a detached `dmdesk _job` process go on with
the run once this worker has stopped without touching it (closing the window with "Keep running
in the background"). `ended` is always the last signal of a job.

The page that owns it only shows what it says (dmdesk.ui.deep_memory_page); no rule lives here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from PySide6.QtCore import QEventLoop, QObject, Qt, QThread, QTimer, Signal, Slot

from dmdesk.app import spawn_job_worker
from dmdesk.domain.models import RunView
from dmdesk.domain.status import ACTIVE
from dmdesk.services.context import ServiceContext
from dmdesk.services.runs import TrainingRunService
from dmdesk.ui.workers import JobWorker, start_in_thread


class JobController(QObject):
    started = Signal(str, object)  # phase, run id (None: the request creates the run)
    run_started = Signal(object)  # RunView, once the run exists / was resumed
    progress_changed = Signal(int, int, int, str, str)  # processed, total, pairs, phase, message
    refused = Signal(str)  # the request itself failed (blocked, invalid settings, a bug)
    ended = Signal(object, bool, bool)  # final RunView or None, stopped by the admin, handed over

    def __init__(self, ctx: ServiceContext, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._worker: JobWorker | None = None
        self._thread: QThread | None = None
        self._trailing: QTimer | None = None  # sends the progress the throttle held back
        self._final: RunView | None = None  # what the worker returned
        self._stopped_by_admin = False
        self.run_id: int | None = None  # the job's run, once known

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(
        self,
        phase: str,
        prepare: Callable[[TrainingRunService], RunView],
        run_id: int | None = None,
    ) -> bool:
        """Start a job; False (nothing started) while one is running."""
        if self.running:
            return False
        # The job gets a context of its own (same database, same owner token): settings saved
        # while it runs change the window's context, never the one the job reads.
        worker = JobWorker(dataclasses.replace(self.ctx), prepare)
        worker.run_started.connect(self._on_run_started)
        worker.progress_changed.connect(self.progress_changed, Qt.ConnectionType.QueuedConnection)
        worker.succeeded.connect(self._on_succeeded)
        worker.failed.connect(self._on_failed)
        self._trailing = worker.trailing_timer(self)
        self._worker = worker
        self.run_id = run_id
        self.started.emit(phase, run_id)
        self._thread = start_in_thread(worker, self, self._on_thread_finished)
        return True

    def stop(self) -> bool:
        """Ask the running job to stop (the run stays resumable); False if none runs."""
        if self._worker is None:
            return False
        self._worker.cancel()
        self._stopped_by_admin = True
        return True

    def hand_over(self) -> bool:
        """Let a detached dmdesk process go on with the run; False if no job runs."""
        if self._worker is None:
            return False
        self._worker.hand_over()
        return True

    def wait(self) -> None:
        """Until the job's thread has ended, processing events meanwhile (the window's close)."""
        thread = self._thread
        if thread is None or not thread.isRunning():
            return
        loop = QEventLoop()
        thread.finished.connect(loop.quit)
        if self._thread is not None and thread.isRunning():
            loop.exec()

    @Slot(object)
    def _on_run_started(self, run: RunView) -> None:
        self.run_id = run.id
        self.run_started.emit(run)

    @Slot(object)
    def _on_succeeded(self, final: RunView) -> None:
        self._final = final

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._final = None
        self.refused.emit(message)

    @Slot()
    def _on_thread_finished(self) -> None:
        final, worker = self._final, self._worker
        handed_over = worker is not None and worker.handed_over
        stopped = self._stopped_by_admin and not handed_over
        self._thread = self._worker = self._final = None
        self._stopped_by_admin = False
        if self._trailing is not None:
            self._trailing.stop()
            self._trailing.deleteLater()
            self._trailing = None
        if handed_over and final is not None and final.status in ACTIVE:
            spawn_job_worker(self.ctx, final.id)
        self.ended.emit(final, stopped, handed_over)
