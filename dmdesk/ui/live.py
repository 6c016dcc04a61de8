"""The window's live view of the runs table: whoever changes a run — this window, a `dmdesk`
command in a terminal, a detached job, another window — the History and the Workflow card show
it within about a second, and a job that died is recovered while the window stays open.

A coroutine on the GUI's qasync loop (dmdesk.ui.aio): every `interval_ms` (or at once, for F5) it
reads, in a thread of its own (`aio.in_thread`: never queued behind other work), a cheap change
token of the runs table (count, newest `updated_at`, highest id; every run write and every
review sets `updated_at`), and only when that changed does it load the runs. Every
`stale_after_s / 3` it also recovers stale runs (a job killed with -9 becomes failed, with
Proceed and Delete; a DeepLake Cloud training run or a batch-mode generation is re-attached by
a detached worker), as a dmdesk start does. The GUI thread only receives the
result: it never waits on the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from dmdesk.app import recover
from dmdesk.services.context import ServiceContext
from dmdesk.services.runs import TrainingRunService
from dmdesk.ui import aio

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_MS = 1000


class _Reader:
    """The watcher's reads, done in a thread. A plain object, not the QObject: what a thread
    job refers to is released in that thread, and a Qt wrapper released there is deleted
    later on the GUI thread by shiboken — after its parent, which crashed (bench/gui_stall.py
    segfaulted in `runDeletionInMainThread` with the watcher's bound method sent to the pool).
    """

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.runs = TrainingRunService(ctx)
        self.lock = threading.Lock()  # held while a read runs
        self.stopped = False
        self.token: tuple[Any, ...] | None = None
        self.recovery_every = max(1.0, ctx.config.stale_after_s / 3)
        self.last_recovery = time.monotonic()  # the process recovered at start-up

    def read(self, force: bool) -> list[Any] | None:
        """The runs, or None when nothing changed since the last read."""
        with self.lock:
            if self.stopped:
                return None  # a read queued before `stop` does nothing
            now = time.monotonic()
            recovered = False
            if now - self.last_recovery >= self.recovery_every:
                self.last_recovery = now

                recovered = bool(recover(self.ctx))
            token = self.runs.change_token()
            if token == self.token and not recovered and not force:
                return None
            self.token = token
            return self.runs.list_runs()

    def stop(self) -> None:
        """Wait for a read in progress (a query: milliseconds); none starts after."""
        if self.lock.acquire(timeout=10):
            self.stopped = True
            self.lock.release()


PAUSED = "Live updates paused — retrying (F5 reloads)"


class RunWatcher(QObject):
    """The live view, supervised so that it cannot stop unseen.

    The watching coroutine may die (an exception), be cancelled by something else, or stall
    (a read that never returns, a loop that no longer runs it). A Qt timer — independent of the
    asyncio task — checks every interval that a read succeeded within the last 3 intervals
    (at least 3 s). When not, the watcher logs one line with the cause, says so through
    `health_changed(PAUSED)` (the window shows it quietly), and starts a fresh coroutine; the
    next successful read says `health_changed("")`. Reads that fail (a locked or vanished
    database) keep it paused until one succeeds.
    """

    runs_loaded = Signal(object)  # list[RunView], newest first: something changed
    health_changed = Signal(str)  # "" = live; else what the window should say

    def __init__(
        self, ctx: ServiceContext, interval_ms: int = DEFAULT_INTERVAL_MS, parent: Any = None
    ) -> None:
        super().__init__(parent)
        self._reader = _Reader(ctx)
        self._interval_s = interval_ms / 1000
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._force = False
        self._failing = False
        self._epoch = 0  # bumped by `invalidate`: a read started before is stale
        self._last_ok = time.monotonic()
        self.health = ""
        self.restarts = 0
        self._guard = QTimer(self)
        self._guard.timeout.connect(self._check)

    def start(self) -> None:
        self._reader.stopped = False
        self._last_ok = time.monotonic()
        if self._task is None:
            self._task = aio.spawn(self._watch(), name="dmdesk run watcher")
        self._guard.start(max(200, int(self._interval_s * 1000)))

    def stop(self) -> None:
        """Stop watching: nothing of the watcher touches the database after this returns."""
        self._guard.stop()
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._reader.stop()

    @property
    def stall_after_s(self) -> float:
        return max(3.0, 3 * self._interval_s)

    @Slot()
    def _check(self) -> None:
        """The supervisor's tick (a Qt timer: it runs even when the coroutine does not)."""
        task = self._task
        if task is None:
            return
        if task.done():
            cause = "it was cancelled" if task.cancelled() else repr(task.exception())
        elif time.monotonic() - self._last_ok > self.stall_after_s:
            cause = (
                "its reads fail"
                if self._failing
                else f"no read came back for {time.monotonic() - self._last_ok:.0f} s"
            )
        else:
            return
        self._set_health(PAUSED)
        if self._failing and not task.done():
            return  # the coroutine runs and retries every interval: nothing to restart
        log.warning("the run watcher stopped (%s): restarting it", cause)
        if not task.done():
            task.cancel()
        self.restarts += 1
        self._last_ok = time.monotonic()  # give the new one its full allowance
        self._task = aio.spawn(self._watch(), name="dmdesk run watcher")

    def _set_health(self, health: str) -> None:
        if health != self.health:
            self.health = health
            if health:
                log.info("live updates paused")
            self.health_changed.emit(health)

    @Slot()
    def poll(self, force: bool = False) -> None:
        """Poll now (F5 forces a reload even without a change)."""
        self._force = self._force or force
        if self._wake is not None:
            self._wake.set()

    def invalidate(self) -> None:
        """The window has just read the runs itself (a refresh after its own job): a read under
        way began before that and may show an older state — it is dropped and read again,
        instead of putting a finished run back to "generating" for a second."""
        self._epoch += 1
        self.poll(force=True)

    async def _watch(self) -> None:
        self._wake = asyncio.Event()
        while True:
            force, self._force = self._force, False
            self._wake.clear()
            epoch = self._epoch
            runs = await self._read(force)
            if epoch != self._epoch:
                self._force = True  # stale: read again at once
                continue
            if runs is not None:
                self.runs_loaded.emit(runs)
            if self._force:
                continue  # F5 came during the read
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)

    async def _read(self, force: bool) -> list[Any] | None:
        try:
            runs = await aio.in_thread(self._reader.read, force)
        except Exception as exc:  # a locked or vanished database: try again next time
            if not self._failing:
                log.warning("cannot read the runs table: %s", exc)
            self._failing = True
            return None
        if self._failing:
            log.info("the runs table can be read again")
        self._failing = False
        self._last_ok = time.monotonic()
        self._set_health("")
        return runs
