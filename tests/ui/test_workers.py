"""The worker/thread plumbing shared by every background task of the GUI."""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Qt, Signal, Slot

from dmdesk.domain.models import ProgressUpdate
from dmdesk.ui.workers import JobWorker, start_in_thread


class _Quick(QObject):
    """The least a worker is for `start_in_thread`: a `run` slot, then `finished`."""

    succeeded = Signal(object)
    finished = Signal()

    @Slot()
    def run(self) -> None:
        self.succeeded.emit(42)
        self.finished.emit()


def test_a_finished_worker_ends_its_thread_without_the_gui_event_loop(qtbot) -> None:
    """Callers may wait() on the thread right after their own loop returned (the demo build
    does): the thread must end even though the GUI thread processes no more events."""
    parent = QObject()
    results: list[object] = []
    worker = _Quick()
    worker.succeeded.connect(results.append)
    thread = start_in_thread(worker, parent)
    assert thread.wait(5000), "the thread waited for a quit queued to the GUI thread"


def test_the_update_the_throttle_held_back_goes_out_while_the_job_waits(qtbot) -> None:
    """Issue 24: the throttle sent a held-back update only with the next one, so a job waiting
    on a slow LLM call showed a stale count (1/40 while 3 were done). The trailing timer sends
    it once its interval has passed; the job's thread and the timer deliver in order."""
    parent = QObject()
    worker = JobWorker(None, None)  # type: ignore[arg-type]  (only the throttle is used)
    seen: list[int] = []
    worker.progress_changed.connect(
        lambda processed, *_: seen.append(processed), Qt.ConnectionType.QueuedConnection
    )
    timer = worker.trailing_timer(parent)

    def job() -> None:  # three chunks done at once, then a long wait on the next one
        for n in (1, 2, 3):
            worker._on_progress(ProgressUpdate(run_id=1, phase="generation", processed=n, total=40))

    thread = threading.Thread(target=job)
    thread.start()
    thread.join()
    qtbot.waitUntil(lambda: seen[-1:] == [3], timeout=2_000)
    assert seen == [1, 3]  # at most one per interval, the last one never left behind
    qtbot.wait(300)
    assert seen == [1, 3]  # nothing is sent twice
    timer.stop()
