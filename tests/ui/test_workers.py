"""The worker/thread plumbing shared by every background task of the GUI."""

from __future__ import annotations

from PySide6.QtCore import QObject

from dmdesk.ui.workers import TaskWorker, start_in_thread


def test_a_finished_worker_ends_its_thread_without_the_gui_event_loop(qtbot) -> None:
    """Callers may wait() on the thread right after their own loop returned (the demo build
    does): the thread must end even though the GUI thread processes no more events."""
    parent = QObject()
    results: list[object] = []
    worker = TaskWorker(lambda: 42)
    worker.done.connect(results.append)
    thread = start_in_thread(worker, parent)
    assert thread.wait(5000), "the thread waited for a quit queued to the GUI thread"
