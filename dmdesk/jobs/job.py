"""What every job of a run shares (generation and training): ownership, the heartbeat, guarded
writes, a progress callback that can never kill the run, and the end of the run.

A job owns its run through the context's owner token while the run is in the job's active
status. Every write goes through :func:`dmdesk.services.transitions.write_run` conditional on
both; when a write loses (stale recovery failed the run, another process took it over) the job
raises :class:`LostRun` and leaves the run alone.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from dmdesk.db.session import session_scope
from dmdesk.domain.models import ProgressCallback, ProgressUpdate, RunView
from dmdesk.domain.status import RunStatus
from dmdesk.jobs.heartbeat import Heartbeat
from dmdesk.services import queries
from dmdesk.services.context import ServiceContext
from dmdesk.services.transitions import write_run

log = logging.getLogger(__name__)


class LostRun(Exception):
    """The run is no longer ours (recovered as stale, or taken over)."""


class Stopped(Exception):
    """Raised in a job's task group (online generation, a batch round) when the run must stop
    now: the admin stopped it, it is no longer ours, or its writes fail. `reason` is what the
    run ends with."""

    def __init__(self, reason: BaseException) -> None:
        super().__init__(repr(reason))
        self.reason = reason


class RunJob:
    """Base of GenerationJob and TrainingJob; `active` is the status the job works in."""

    active: RunStatus

    def __init__(
        self,
        ctx: ServiceContext,
        run_id: int,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.ctx = ctx
        self.run_id = run_id
        self.progress = progress or (lambda _u: None)
        self.cancel = cancel or threading.Event()
        # Set (with cancel) when another process takes the run over: stop, write nothing.
        self.handover = threading.Event()

    def get_run(self) -> RunView:
        """The job's run as it is now (read side only: a job does not command other runs)."""
        return queries.get_run(self.ctx, self.run_id)

    def heartbeat(self) -> Heartbeat:
        return Heartbeat(self.ctx, self.run_id, self.active)

    def guarded(self, s: Any, **values: Any) -> None:
        """Write `values` to the run if it is still ours and active; else raise LostRun."""
        now = self.ctx.clock()
        values.setdefault("heartbeat_at", now)
        values.setdefault("updated_at", now)
        if not write_run(s, self.run_id, expect=self.active, owned_by=self.ctx.owner, **values):
            raise LostRun()

    def guarded_write(self, **values: Any) -> None:
        """:meth:`guarded` in a transaction of its own."""
        with session_scope(self.ctx.sessions) as s:
            self.guarded(s, **values)

    def end(self, to: RunStatus, **values: Any) -> RunView:
        """Leave the active status for `to` (done or failed) and release ownership. A run that
        is no longer ours is returned as it is."""
        now = self.ctx.clock()
        values.setdefault("updated_at", now)
        values.setdefault("owner", None)
        with session_scope(self.ctx.sessions) as s:
            write_run(s, self.run_id, expect=self.active, owned_by=self.ctx.owner, to=to, **values)
        return self.get_run()

    def emit(self, update: ProgressUpdate) -> None:
        """Hand a progress update to the caller; a broken consumer must not kill the run."""
        try:
            self.progress(update)
        except Exception:
            log.exception("run %s: progress callback failed", self.run_id)
