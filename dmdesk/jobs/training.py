"""The training job: approved pairs → a Deep Memory backend → metrics (DESIGN.md "Training job").

* The backend's job id is stored the moment the backend has one, so a crash keeps it.
* Success: `completed` with the backend's metrics and the activation guard's verdict; the model
  is used only when the guard measured a gain on unseen pairs (dmdesk.services.activation).
* Failure (Scenario 2, FR-4.6): `training_failed` with a readable error; the job id and any
  partial metrics are kept for diagnostics. Proceed (FR-4) re-runs this job with the same
  approved pairs — nothing is regenerated (SC-3).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import select

from dmdesk.db.models import TrainingPair, TrainingRun
from dmdesk.db.session import session_scope
from dmdesk.deepmemory import evalset
from dmdesk.deepmemory.base import TrainingRequest
from dmdesk.deepmemory.guard import decide
from dmdesk.domain.errors import Cancelled, DmdeskError, TrainingError
from dmdesk.domain.models import ProgressUpdate, RunView
from dmdesk.domain.snapshot import RunSnapshot
from dmdesk.domain.status import RunStatus
from dmdesk.jobs.job import LostRun, RunJob
from dmdesk.services.activation import apply_guard

log = logging.getLogger(__name__)

PROGRESS_SCALE = 1000  # training progress is reported as processed/1000


class TrainingJob(RunJob):
    active = RunStatus.TRAINING

    def request(self) -> TrainingRequest:
        """The approved pairs of the run, as deeplake's `train(queries, relevance)` wants them."""
        with session_scope(self.ctx.sessions) as s:
            run = s.get(TrainingRun, self.run_id)
            if run is None or run.status != RunStatus.TRAINING or run.owner != self.ctx.owner:
                raise LostRun()
            rows = s.execute(
                select(TrainingPair.question, TrainingPair.chunk_id)
                .where(
                    TrainingPair.training_run_id == self.run_id,
                    TrainingPair.approved.is_(True),
                )
                .order_by(TrainingPair.id)
            ).all()
            settings = run.settings or RunSnapshot()
            previous_job_id = run.deeplake_job_id
        return TrainingRequest(
            run_id=self.run_id,
            queries=[q for q, _ in rows],
            relevance=[[(cid, 1)] for _, cid in rows],
            vector_store_path=settings.vector_store_path,
            settings=settings,
            previous_job_id=previous_job_id,
            evaluation=evalset.load(self.ctx.config.data_dir, settings.vector_store_path),
        )

    def run(self) -> RunView:
        heartbeat = self.heartbeat()
        try:
            with heartbeat:
                request = self.request()
                if not request.queries:
                    raise DmdeskError("The run has no approved pair to train on.")
                backend_name = request.settings.need(
                    request.settings.deep_memory_backend, "Deep Memory backend"
                )
                backend = self.ctx.backend_factory(backend_name, self.ctx.config)
                cancel = _Either(self.cancel, heartbeat.lost)
                attach = request.settings.attach_job_id
                if attach and hasattr(backend, "attach"):
                    self._report(0.0, f"Re-attached to {backend.name} job {attach}")
                    metrics = backend.attach(
                        request, job_id=attach, progress=self._report, cancel=cancel
                    )
                elif request.previous_job_id and hasattr(backend, "resume"):
                    # Proceed on a run whose job exists: the backend asks what became of it
                    # (follow it, evaluate it, or submit again) instead of re-submitting blindly.
                    metrics = backend.resume(
                        request,
                        job_id=request.previous_job_id,
                        on_job_id=self._store_job_id,
                        progress=self._report,
                        cancel=cancel,
                    )
                else:
                    self._report(0.0, f"Submitting {len(request.queries)} pairs to {backend.name}")
                    metrics = backend.train(
                        request,
                        on_job_id=self._store_job_id,
                        progress=self._report,
                        cancel=cancel,
                    )
                if heartbeat.lost.is_set():
                    raise LostRun()
                if self.cancel.is_set():
                    raise Cancelled()
            metrics = {**metrics, "activation": decide(metrics)}
            view = self._end(RunStatus.COMPLETED, metrics=metrics, error=None)
            if apply_guard(self.ctx, view):
                return self.get_run()
            return view
        except Cancelled as exc:
            if not self.handover.is_set():
                return self._end(RunStatus.TRAINING_FAILED, metrics=None, error=exc.message)
            log.info("run %s: handed over to another process", self.run_id)
            return self.get_run()
        except LostRun:
            log.warning("run %s: no longer ours; stopping without touching it", self.run_id)
            return self.get_run()
        except TrainingError as exc:
            return self._end(
                RunStatus.TRAINING_FAILED,
                metrics=exc.metrics,
                error=exc.message,
                job_id=exc.job_id,
            )
        except DmdeskError as exc:
            return self._end(RunStatus.TRAINING_FAILED, metrics=None, error=exc.message)
        except Exception as exc:
            log.error("run %s: unexpected training error", self.run_id, exc_info=exc)
            return self._end(
                RunStatus.TRAINING_FAILED,
                metrics=None,
                error=f"Unexpected error ({type(exc).__name__}: {exc}). Proceed to retry.",
            )

    def _store_job_id(self, job_id: str) -> None:
        self.guarded_write(deeplake_job_id=job_id)

    def _end(
        self,
        status: RunStatus,
        *,
        metrics: dict[str, Any] | None,
        error: str | None,
        job_id: str | None = None,
    ) -> RunView:
        values: dict[str, Any] = {"error_message": error}
        if metrics is not None:  # partial metrics are kept; absent ones do not erase old ones
            values["metrics"] = metrics
        if job_id:
            values["deeplake_job_id"] = job_id
        if error:
            values["error_message"] = f"Training failed: {error}"[:4000]
        return self.end(status, **values)

    def _report(self, fraction: float, message: str = "") -> None:
        self.emit(
            ProgressUpdate(
                run_id=self.run_id,
                phase="training",
                processed=int(max(0.0, min(1.0, fraction)) * PROGRESS_SCALE),
                total=PROGRESS_SCALE,
                message=message,
            )
        )


class _Either(threading.Event):
    """An Event that reads as set when either of two events is (cancel or lost ownership)."""

    def __init__(self, a: threading.Event, b: threading.Event) -> None:
        super().__init__()
        self._a, self._b = a, b

    def is_set(self) -> bool:
        return self._a.is_set() or self._b.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        step = 0.05
        waited = 0.0
        while not self.is_set():
            if timeout is not None and waited >= timeout:
                return False
            self._a.wait(step)
            waited += step
        return True
