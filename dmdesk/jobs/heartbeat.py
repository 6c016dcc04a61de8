"""The heartbeat of a running run (DESIGN.md state machine).

A thread refreshes `heartbeat_at` every `stale_after_s / 3` seconds — a thread, not a coroutine,
so a busy event loop cannot make a live run look dead. Each beat is conditional on the run still
being ours (`owner`) and in its active status; when it is not (stale recovery failed it, another
process took it over), `lost` is set and the job stops without touching the run again.
"""

from __future__ import annotations

import threading

from dmdesk.db.session import session_scope
from dmdesk.domain.status import RunStatus
from dmdesk.services.context import ServiceContext
from dmdesk.services.transitions import write_run


class Heartbeat:
    def __init__(self, ctx: ServiceContext, run_id: int, status: RunStatus | str) -> None:
        self._ctx, self._run_id, self._status = ctx, run_id, RunStatus(status)
        self.interval = max(0.2, ctx.config.stale_after_s / 3)
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{run_id}", daemon=True)

    def beat(self) -> bool:
        with session_scope(self._ctx.sessions) as s:
            ok = write_run(
                s,
                self._run_id,
                expect=self._status,
                owned_by=self._ctx.owner,
                heartbeat_at=self._ctx.clock(),
            )
        if not ok:
            self.lost.set()
        return ok

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.beat():
                    return
            except Exception:  # a locked DB for one beat is not fatal; the next one retries
                continue

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
