"""Workers: long work off the GUI thread, reported through one small signal vocabulary
(`run_started`, `progress_changed`, `succeeded`, `failed`, `finished`), which the window's
`JobController` (dmdesk.ui.jobs) turns into its own. Short I/O is not a worker's: it is a
coroutine on the GUI loop (dmdesk.ui.aio).

A `JobWorker` is a QObject moved to a QThread (superqt's pattern). Its `run` first performs the
request that creates or resumes a run (start generation, proceed, start training), then runs the
run's job through the service layer, whose plain progress callback it turns into Qt signals,
throttled to at most ~10 per second so the GUI thread never drowns. Every exception becomes
`failed(message)`; `finished` is always last. Cancel is cooperative: `cancel()` sets an Event the
job checks between chunks.

Signals are emitted from the worker thread and delivered queued to slots of GUI-thread QObjects
(PySide6: a lambda connected to a worker signal would run in the worker's thread).
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, QThread, QTimer, Signal, Slot

from dmdesk.domain.errors import DmdeskError
from dmdesk.domain.models import ProgressUpdate, RunView
from dmdesk.jobs.runner import run_job
from dmdesk.services.context import ServiceContext
from dmdesk.services.runs import TrainingRunService
from dmdesk.ui.workflow_panel import user_message

log = logging.getLogger(__name__)


def failure_text(exc: Exception, what: str) -> str:
    """What the window says of a background call that raised: a dmdesk error's own message;
    anything else is a bug, logged with its traceback (as "<what> failed") and named."""
    if isinstance(exc, DmdeskError):
        return exc.message
    log.error("%s failed", what, exc_info=exc)
    return f"Unexpected error: {type(exc).__name__}: {exc}"


PROGRESS_INTERVAL_S = 0.1  # ≤ 10 progress signals a second

_heap_settled = False


def apply_responsiveness_policy() -> None:
    """How the GUI process keeps its thread responsive while a job thread runs at full speed
    (measured with bench/gui_stall.py: longest stall of a 10 ms timer, 146 ms at first, then
    41–61 ms with a 0.5 ms switch interval, ~31 ms with 0.1 ms; target 50 ms).

    * The GIL: repainting the history calls back into Python for every cell and role, and each
      callback re-acquires the GIL from the CPU-bound job thread, waiting up to the switch
      interval each time (5 ms by default). Instrumented on the qasync loop, the remaining
      30–60 ms gaps came every progress update (~10 a second), none from the collector: a
      0.1 ms interval bounds that convoy (the job's own cost: see README, P3).
    * The collector: with deeplake, PySide6, the SDK and SQLAlchemy loaded, a full collection
      scans ~200k long-lived objects and stops every thread for 50–130 ms. A 50,000-allocation
      young generation makes collections rare, and `settle_heap` takes the long-lived heap out
      of their scans.
    (The history's columns are also no longer re-measured on every change: see HistoryView.)
    """
    gc.set_threshold(50_000, 20, 20)
    sys.setswitchinterval(0.0001)


class GuiThreadCollector(QObject):
    """Python's cyclic garbage collected on the GUI thread only.

    The collector runs in whichever thread allocates when a threshold is passed — in dmdesk
    mostly the job thread. A widget that was part of a reference cycle was then destroyed *in
    the job thread* (gdb: `QWidget::~QWidget` on a worker thread, shiboken deferring its
    layout's deletion to the GUI thread, which then crashed in `runDeletionInMainThread`;
    bench/gui_stall.py segfaulted in 3 runs of 3). With automatic collection off, a GUI-thread
    timer collects the generations whose thresholds were passed (PyQt's classic recipe); the
    job threads never collect, only allocate. `stop()` gives the interpreter its collector back.

    While a worker thread runs, a full (generation 2) collection — ~40 ms of the GUI thread,
    measured with bench/gui_stall.py — happens at most every `full_every_s`; the young
    generations are collected as usual (≤ 2 ms each once the heap is settled).
    """

    full_every_s = 300.0

    def __init__(self, interval_ms: int = 250, parent: QObject | None = None) -> None:
        super().__init__(parent)
        from PySide6.QtCore import QTimer

        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._collect)
        self._timer.start()
        self._last_full = time.monotonic()

    @Slot()
    def _collect(self) -> None:
        counts = gc.get_count()
        thresholds = gc.get_threshold()
        passed = [g for g in range(3) if counts[g] > thresholds[g]]
        if not passed:
            return
        generation = passed[-1]
        now = time.monotonic()
        if generation == 2 and workers_running() and now - self._last_full < self.full_every_s:
            generation = 1  # a job is running: the full collection waits
        if generation == 2:
            self._last_full = now
        gc.collect(generation)

    def stop(self) -> None:
        self._timer.stop()
        if self._was_enabled:
            gc.enable()


def settle_heap() -> None:
    """Once per process, in a worker thread: import what a job needs (deeplake, the SDK), then
    freeze the heap so later collections skip it. `gc.freeze` only moves lists; no scan."""
    global _heap_settled
    if _heap_settled:
        return
    # late, on purpose: this is the import of a job's modules, done once in a worker thread
    from dmdesk.jobs import generation, training  # noqa: F401
    from dmdesk.llm import openai_generator  # noqa: F401
    from dmdesk.vectorstore._deeplake import import_deeplake

    import_deeplake()
    gc.freeze()
    _heap_settled = True


class JobWorker(QObject):
    run_started = Signal(object)  # RunView, once the run exists / was resumed
    progress_changed = Signal(int, int, int, str, str)  # processed, total, pairs, phase, message
    succeeded = Signal(object)  # final RunView (completed phase, or a failed run)
    failed = Signal(str)  # the request itself failed (blocked, invalid settings, bug)
    finished = Signal()

    def __init__(
        self, ctx: ServiceContext, prepare: Callable[[TrainingRunService], RunView]
    ) -> None:
        super().__init__()
        self._ctx = ctx
        self._prepare = prepare
        self._cancel = threading.Event()
        self._handover = threading.Event()
        self._last_emit = 0.0
        self._pending: ProgressUpdate | None = None  # held back by the throttle
        self._held_lock = threading.Lock()  # the job's thread holds back, the GUI's timer sends

    def cancel(self) -> None:
        self._cancel.set()

    def hand_over(self) -> None:
        """Stop without touching the run: a detached dmdesk process goes on with it."""
        self._handover.set()
        self._cancel.set()

    @property
    def handed_over(self) -> bool:
        return self._handover.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def _on_progress(self, u: ProgressUpdate) -> None:
        """In the job's thread: at most one update per interval goes out; a later one is held
        back, and sent by `send_held` (the GUI's timer) once its interval has passed, or by the
        next update, or at the end of the job — never left behind while the job waits on
        something slow (a held "9/40" used to stay until chunk 11)."""
        with self._held_lock:
            now = time.monotonic()
            send = now - self._last_emit >= PROGRESS_INTERVAL_S or u.processed >= u.total
            if send:
                self._last_emit, self._pending = now, None
            else:
                self._pending = u
        if send:
            self.progress_changed.emit(u.processed, u.total, u.pair_count, u.phase, u.message)

    def send_held(self) -> None:
        """The trailing edge of the throttle (superqt's `qthrottled` behaviour), called from the
        GUI thread's timer: the update held back goes out once its interval has passed."""
        with self._held_lock:
            u = self._pending
            if u is None or time.monotonic() - self._last_emit < PROGRESS_INTERVAL_S:
                return
            self._pending, self._last_emit = None, time.monotonic()
        self.progress_changed.emit(u.processed, u.total, u.pair_count, u.phase, u.message)

    def trailing_timer(self, parent: QObject) -> QTimer:
        """A running timer in the GUI thread (`parent`'s) that sends what the throttle held back.
        Connect `progress_changed` queued: what the job's thread and this timer send then
        arrives in the order it was sent."""
        timer = QTimer(parent)
        timer.setInterval(int(PROGRESS_INTERVAL_S * 1000))
        timer.timeout.connect(self.send_held)
        timer.start()
        return timer

    @Slot()
    def run(self) -> None:
        try:
            settle_heap()
            runs = TrainingRunService(self._ctx)
            run = self._prepare(runs)
            self.run_started.emit(run)
            final = run_job(runs.ctx, run.id, self._on_progress, self._cancel, self._handover)
            with self._held_lock:
                u, self._pending = self._pending, None
            if u is not None:
                self.progress_changed.emit(u.processed, u.total, u.pair_count, u.phase, u.message)
            self.succeeded.emit(final)
        except DmdeskError as exc:
            self.failed.emit(user_message(exc))
        except Exception as exc:
            self.failed.emit(failure_text(exc, "worker"))
        finally:
            self.finished.emit()


_running_lock = threading.Lock()
_running = 0


def workers_running() -> int:
    """How many threads started by `start_in_thread` are running."""
    return _running


def _worker_thread_ended() -> None:  # in the worker's thread (a direct connection)
    global _running
    with _running_lock:
        _running -= 1


def start_in_thread(
    worker: QObject, parent: QObject, on_finished: Callable[[], None] | None = None
) -> QThread:
    """Move `worker` to a new QThread owned by `parent` and start it; the thread is deleted once
    it has finished. Returns the thread (wait on `thread.finished` or `isFinished`).

    The caller keeps a Python reference to `worker` and drops it once the *thread* has finished
    (a slot of `thread.finished`): Python then deletes the worker in the GUI thread. The worker
    is deliberately not `deleteLater`ed: Qt runs that deferred delete in the worker's thread
    *after* `finished` is emitted, so it raced the GUI thread dropping its reference, and
    shiboken destroyed the wrapper from both sides — a SIGSEGV at the end of a job, 1 run in 3
    of the window test (gdb: `Shiboken::Object::destroy` from `QObject::event` in the QThread).
    """
    thread = QThread(parent)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)  # type: ignore[attr-defined]
    # Direct: QThread.quit is thread-safe. Queued to the GUI thread, the quit was lost when a
    # caller wait()ed on the thread after its own event loop had returned (the demo build hung).
    worker.finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)  # type: ignore[attr-defined]
    if on_finished is not None:  # connected before the start: a worker that ends at once
        thread.finished.connect(on_finished)  # cannot finish before anyone listens
    thread.finished.connect(_worker_thread_ended, Qt.ConnectionType.DirectConnection)
    thread.finished.connect(thread.deleteLater)
    global _running
    with _running_lock:
        _running += 1
    thread.start()
    return thread
