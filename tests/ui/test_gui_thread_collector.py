"""Widgets must never be destroyed on a job thread. Python's cyclic collector runs in whichever
thread passes a threshold — in dmdesk the job thread, which allocates most — and a widget in a
reference cycle was destroyed there (bench/gui_stall.py segfaulted in shiboken's
`runDeletionInMainThread`). With dmdesk's collector, garbage is collected on the GUI thread."""

from __future__ import annotations

import gc
import threading
from typing import ClassVar

from dmdesk.ui.workers import GuiThreadCollector


class Cyclic:
    finalised_on: ClassVar[list[str]] = []

    def __init__(self) -> None:
        self.me = self  # garbage only the cyclic collector frees

    def __del__(self) -> None:
        Cyclic.finalised_on.append(threading.current_thread().name)


KEPT: list[object] = []


def make_garbage_in_a_job_thread() -> None:
    def job() -> None:
        Cyclic()
        KEPT.append([[i] for i in range(300_000)])  # allocations past every threshold

    t = threading.Thread(target=job, name="job")
    t.start()
    t.join()


def test_cyclic_garbage_made_by_a_job_thread_is_collected_on_the_gui_thread(
    qtbot, gui_thread_collector: GuiThreadCollector
) -> None:
    Cyclic.finalised_on.clear()
    make_garbage_in_a_job_thread()
    assert Cyclic.finalised_on == []  # nothing collected in the job thread
    qtbot.waitUntil(lambda: bool(Cyclic.finalised_on), timeout=5_000)
    assert Cyclic.finalised_on == [threading.main_thread().name]
    KEPT.clear()


def test_without_it_the_job_thread_collects(qtbot, gui_thread_collector) -> None:
    """The premise: the interpreter's collector runs in the allocating thread."""
    gui_thread_collector.stop()
    gc.collect()
    Cyclic.finalised_on.clear()
    make_garbage_in_a_job_thread()
    KEPT.clear()
    assert Cyclic.finalised_on == ["job"]
