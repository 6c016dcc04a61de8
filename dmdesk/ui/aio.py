"""The GUI thread's asyncio loop: qasync runs asyncio on the Qt event loop.

The window's short I/O — watching the runs table, keyring and settings reads, the LLM connection
test — is coroutines on this loop; their blocking parts go to a small thread pool through
`asyncio.to_thread`, so the GUI thread never waits on a database, a keyring or a socket, and no
nested event loop is ever spun. Long jobs (generation, training) stay in QThread workers, each
with its own asyncio loop in its own thread.

`dmdesk gui` creates the loop and runs the application on it (`run`). Anywhere else a window is
built — pytest-qt, the screenshot tool, a benchmark — the first coroutine creates it in qasync's
*already running* mode over the existing QApplication: its callbacks then run whenever Qt
processes events (a `qtbot.waitUntil`, a `QEventLoop.exec`), exactly as in the application.
`release()` pauses it (the test plugin calls it after each test): its tasks are cancelled and
the thread has no running loop until the next coroutine starts.

A running loop in the GUI thread forbids `run_until_complete` on that thread; the services'
own loops (`dmdesk.jobs.generation.run_on_own_loop`) therefore move to a thread of their own
when they are called from it — the GUI never does that, tests that set data up do.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import qasync
from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import QApplication

log = logging.getLogger(__name__)

IO_THREADS = 2  # keyring, settings and database reads: short, rarely two at once

_loop: qasync.QEventLoop | None = None
_under_run = False  # `run` owns the loop: `release` leaves it alone
_tasks: set[asyncio.Task[Any]] = set()  # strong references: a bare task may be collected


class _Waker(QObject):
    """Lives in the GUI thread; its queued slot runs there whoever emits `woke`."""

    woke = Signal()

    def __init__(self, drain: Callable[[], None]) -> None:
        super().__init__()
        self._drain = drain
        self.woke.connect(self._on_woke, Qt.ConnectionType.QueuedConnection)

    @Slot()
    def _on_woke(self) -> None:
        self._drain()


class GuiLoop(qasync.QEventLoop):  # type: ignore[misc]  # qasync ships no types
    """qasync's loop, with a `call_soon_threadsafe` that is thread-safe on PySide6 6.12.

    qasync 0.28 connects its cross-thread signal to a *lambda*, and PySide6 6.12 runs a lambda
    slot in the emitting thread (DESIGN.md, known facts): every `asyncio.to_thread` result then
    scheduled its callback from the pool thread, starting Qt timers there, and the process died
    within seconds ("bool_dealloc: deallocating True or False", or a segfault in shiboken's
    `runDeletionInMainThread`; reproduced with 200 `to_thread` calls a second). Here a thread
    only appends to a queue and emits an argument-less signal to a GUI-thread QObject; the queue
    is drained by its slot, on the GUI thread.
    """

    def __init__(self, app: QApplication, *, already_running: bool) -> None:
        self._from_threads: collections.deque[tuple[Any, tuple[Any, ...], Any]] = (
            collections.deque()
        )
        self._waker = _Waker(self._drain_threads)
        super().__init__(app, already_running=already_running)

    def call_soon_threadsafe(self, callback: Any, *args: Any, context: Any = None) -> None:
        self._from_threads.append((callback, args, context))  # deque.append: atomic
        self._waker.woke.emit()

    def _drain_threads(self) -> None:
        while self._from_threads:
            callback, args, context = self._from_threads.popleft()
            if not self.is_closed():
                self.call_soon(callback, *args, context=context)


def _new_loop(app: QApplication, *, already_running: bool) -> qasync.QEventLoop:
    loop = GuiLoop(app, already_running=already_running)
    # Plain Python threads, not qasync's QThreadExecutor: nothing of this pool is a QThread that
    # could outlive a window ("QThread: Destroyed while thread is still running").
    loop.set_default_executor(ThreadPoolExecutor(IO_THREADS, thread_name_prefix="dmdesk-io"))
    # Not made the thread's "current" loop (set_event_loop): coroutines find it as the running
    # loop, and the loop deeplake's nest_asyncio put there at import stays where it is.
    return loop


def run(app: QApplication) -> int:
    """Run the application on a qasync loop until it quits; the loop is closed after (its
    thread pool joined), so nothing of it outlives the window.

    The window is built before this is called, and its coroutines (the run watcher, the
    Settings card's reads, the estimate) are started by its constructor: on the loop `loop()`
    made for them. That loop is run here with its tasks — only its "running" flag is lowered
    for `run_forever` to raise it again. (It used to be `release()`d here, which cancelled
    them: the shipped window's watcher died before the window was shown, and the window never
    followed other processes — tests/e2e/test_shipped_window.py.)"""
    global _loop, _under_run
    if _loop is not None and _loop.is_running():
        _set_running(_loop, False)  # keep its tasks: the window's own, spawned a moment ago
    loop = _loop if _loop is not None else _new_loop(app, already_running=False)
    _loop, _under_run = loop, True
    try:
        with loop:  # closes the loop (and joins its pool) when the application quits
            return int(loop.run_forever())
    finally:
        _loop, _under_run = None, False


def loop() -> qasync.QEventLoop:
    """The GUI thread's loop (created over the running QApplication when `run` did not, and
    kept for the process: a qasync loop is made once and only paused by `release`)."""
    global _loop
    if _loop is None:
        app = QApplication.instance()
        if not isinstance(app, QApplication):
            raise RuntimeError("a QApplication must exist before the GUI's asyncio loop")
        _loop = _new_loop(app, already_running=True)
        atexit.register(_close_at_exit)
    elif not _loop.is_running():  # paused by `release`: running again
        _set_running(_loop, True)
    return _loop


def _close_at_exit() -> None:
    """Close the kept loop while Qt still exists (at interpreter teardown its signal source is
    gone and qasync's `close` fails)."""
    current = _loop
    if current is not None and not _under_run:
        with contextlib.suppress(Exception):
            _set_running(current, False)
            current.close()


def _set_running(current: qasync.QEventLoop, running: bool) -> None:
    # Not `current.stop()` to pause: that calls QApplication.exit, whose "quit now" flag then
    # makes every later QEventLoop.exec (a qtbot wait) return at once. qasync's own flag.
    current._QEventLoop__is_running = running
    asyncio.events._set_running_loop(current if running else None)


T = TypeVar("T")


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a daemon thread of its own, awaited on the loop.

    For blocking work that must neither wait for nor hold one of the loop's two pool threads:
    the run watcher's reads (a window that misses other processes' changes because the pool is
    busy is the bug issue 11 fixed) and the Workflow card's estimate (it opens the store and
    reads the keyring, which can block for the keyring's D-Bus timeout). Seen in CI: an
    estimate stuck in the shared pool left the watcher without a thread for 15 s. Cancelling
    the await leaves the thread to finish on its own; its result is dropped."""
    current = asyncio.get_running_loop()
    future: asyncio.Future[T] = current.create_future()

    def settle(result: Any, exc: BaseException | None) -> None:
        if future.done():
            return  # cancelled meanwhile
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

    def work() -> None:
        try:
            result, exc = fn(*args), None
        except BaseException as error:  # handed to the awaiting coroutine
            result, exc = None, error
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
            current.call_soon_threadsafe(settle, result, exc)

    name = f"dmdesk-{getattr(fn, '__name__', 'work')}"
    threading.Thread(target=work, name=name, daemon=True).start()
    return await future


def spawn(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
    """Start `coro` on the GUI loop. An exception it raises is logged (never lost silently);
    cancelling the task is how its owner stops it."""
    task: asyncio.Task[Any] = loop().create_task(coro, name=name)
    _tasks.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Task[Any]) -> None:
    _tasks.discard(task)
    exc = None if task.cancelled() else task.exception()
    if exc is not None:
        log.error("%s failed", task.get_name(), exc_info=exc)


def release() -> None:
    """Pause an *already running* loop made by `loop()`: cancel its tasks and give the thread
    back its plain state (no running asyncio loop), for code that follows and runs its own
    loops on this thread. A no-op under `run`. The loop itself is kept: qasync loops made and
    closed again and again in one process crashed Qt."""
    current = _loop
    if current is None or _under_run or not current.is_running():
        return
    for task in list(_tasks):
        task.cancel()
    for _ in range(100):  # let the cancellations run (each is a step on the Qt loop)
        if not _tasks:
            break
        QApplication.processEvents()
    _set_running(current, False)
