"""The window's live view of the runs table: whoever changes a run — this window, a `dmdesk`
command in a terminal, a detached job, another window — the History and the Workflow card show
it within about a second, and a job that died is recovered while the window stays open.

Every `interval_ms` a poll runs on a thread of its own (never on the GUI thread): it reads a
cheap change token of the runs table (count, newest `updated_at`, highest id; every run write
and every review sets `updated_at`), and only when that changed does it load the runs. Every
`stale_after_s / 3` it also recovers stale runs (a job killed with -9 becomes failed, with
Proceed and Delete; a DeepLake Cloud training run is re-attached by a detached worker), as a
dmdesk start does. Results come back to the GUI thread as a queued Qt signal.

Decision: a QTimer and a one-thread executor, not coroutines on a qasync loop. A running
asyncio loop in the GUI thread made every `asyncio.run`/`run_until_complete` on that thread
fail (deeplake's nest_asyncio patches, the services' own loops in tests that share the
process), while the work here is two short queries a second; see README "How it is built".
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from dmdesk.services.context import ServiceContext
from dmdesk.services.runs import TrainingRunService

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_MS = 1000


class RunWatcher(QObject):
    runs_loaded = Signal(object)  # list[RunView], newest first: something changed
    _polled = Signal(object)  # (runs or None), from the poll thread to the GUI thread

    def __init__(
        self, ctx: ServiceContext, interval_ms: int = DEFAULT_INTERVAL_MS, parent: Any = None
    ) -> None:
        super().__init__(parent)
        self._ctx = ctx
        self._runs = TrainingRunService(ctx)
        self._pool: ThreadPoolExecutor | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.poll)
        self._polled.connect(self._on_polled)
        self._busy = False
        self._force = False
        self._token: tuple[Any, ...] | None = None
        self._recovery_every = max(1.0, ctx.config.stale_after_s / 3)
        self._last_recovery = time.monotonic()  # the process recovered at start-up
        self._failing = False

    def start(self) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="dmdesk-watch")
        self._timer.start()

    def stop(self) -> None:
        """Stop polling; waits for a poll in progress (a query: milliseconds)."""
        self._timer.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    @Slot()
    def poll(self, force: bool = False) -> None:
        """Poll now (the timer calls it; F5 forces a reload even without a change)."""
        self._force = self._force or force
        if self._busy or self._pool is None:
            return
        self._busy = True
        force, self._force = self._force, False
        future = self._pool.submit(self._poll, force)
        future.add_done_callback(self._deliver)

    def _poll(self, force: bool) -> list[Any] | None:  # on the poll thread
        now = time.monotonic()
        recovered = False
        if now - self._last_recovery >= self._recovery_every:
            self._last_recovery = now
            from dmdesk.app import recover

            recovered = bool(recover(self._ctx))
        token = self._runs.change_token()
        if token == self._token and not recovered and not force:
            return None
        self._token = token
        return self._runs.list_runs()

    def _deliver(self, future: Future[list[Any] | None]) -> None:  # on the poll thread
        try:
            result = future.result()
            if self._failing:
                log.info("the runs table can be read again")
            self._failing = False
        except Exception as exc:  # a locked or vanished database: try again next time
            if not self._failing:
                log.warning("cannot read the runs table: %s", exc)
            self._failing = True
            result = None
        self._polled.emit(result)

    @Slot(object)
    def _on_polled(self, runs: list[Any] | None) -> None:
        self._busy = False
        if runs is not None:
            self.runs_loaded.emit(runs)
