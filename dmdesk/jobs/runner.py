"""Run the job of a run's active phase: generation for a `generating` run, training for a
`training` run. The service (`dmdesk.services.runs`) starts and proceeds runs; whoever started
one — the CLI's `--wait`, the window's job worker, a handed-over job process — runs it here."""

from __future__ import annotations

import threading

from dmdesk.domain.errors import RuleViolation
from dmdesk.domain.models import ProgressCallback, RunView
from dmdesk.domain.status import RunStatus
from dmdesk.embeddings import release_local_model
from dmdesk.jobs.generation import GenerationJob
from dmdesk.jobs.training import TrainingJob
from dmdesk.services import queries
from dmdesk.services.context import ServiceContext


def run_job(
    ctx: ServiceContext,
    run_id: int,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    handover: threading.Event | None = None,
) -> RunView:
    """Run the job of the run's active phase in this thread, until it ends; returns the run.

    The run must be owned by this context (it was just started or proceeded here). `cancel`
    stops the job, leaving the run failed and resumable; with `handover` set too, the job
    stops without touching the run, for another process with the same owner token to go
    on with it (`dmdesk.app.spawn_job_worker`)."""
    view = queries.get_run(ctx, run_id)  # the read side: a job commands no run
    job: GenerationJob | TrainingJob
    if view.status is RunStatus.GENERATING:
        job = GenerationJob(ctx, run_id, progress, cancel)
    elif view.status is RunStatus.TRAINING:
        job = TrainingJob(ctx, run_id, progress, cancel)
    else:
        raise RuleViolation(f"Run #{run_id} is {view.status.value}; there is no job to run.")
    if handover is not None:
        job.handover = handover
    try:
        result: RunView = job.run()
    finally:
        # The models the job loaded leave the process with it (the window lives all day:
        # 1.6 GB resident after the demo's generation before this, issue 26); the next job
        # or search reloads them in about a second.
        release_local_model()
    return result
