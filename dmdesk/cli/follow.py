"""Following a run's job from the terminal: `--wait` runs it here with a progress bar (Ctrl-C
stops it resumably), without it a detached `dmdesk _job` process runs it, and `run ID --follow`
watches whoever runs it."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from dmdesk.cli.render import Bar, show
from dmdesk.domain.errors import EXIT_FAILED, EXIT_OK
from dmdesk.domain.models import ProgressUpdate, RunView
from dmdesk.domain.status import ACTIVE, FAILED, RunStatus

if TYPE_CHECKING:
    from dmdesk.services.context import ServiceContext


EXIT_INTERRUPTED = 130


def wait(ctx: ServiceContext, run: RunView, as_json: bool) -> int:
    """Run the job here, with a progress bar.

    Ctrl-C (SIGINT) or SIGTERM stops it cooperatively: a signal handler sets the job's cancel
    flag — no KeyboardInterrupt races the wait (on Python 3.11 an interrupt inside
    `Thread.join` made a still-running thread look finished, and its result was read before it
    existed: `KeyError: 'run'`, the run left `generating`). The run ends failed and resumable,
    the process exits 130 with the command that continues it. A second signal exits at once;
    the run is then recovered as interrupted once its heartbeat is stale."""

    from dmdesk.jobs.runner import run_job  # late: the job's modules (SQLAlchemy, the SDKs)

    cancel = threading.Event()
    bar = Bar()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["run"] = run_job(ctx, run.id, bar, cancel)
        except BaseException as exc:
            box["error"] = exc

    def on_signal(signum: int, _frame: Any) -> None:
        if cancel.is_set():
            print(
                "\ndmdesk: stopped at once; the run is recovered as interrupted.", file=sys.stderr
            )
            os._exit(EXIT_INTERRUPTED)
        cancel.set()
        print(
            "\nStopping… (the run stays resumable; press Ctrl-C again to quit at once)",
            file=sys.stderr,
        )

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, on_signal) for sig in handled}
    t = threading.Thread(target=work, name=f"job-{run.id}")
    t.start()
    try:
        while t.is_alive():
            t.join(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        bar.close()
    if "error" in box:
        raise box["error"]
    final: RunView = box["run"]
    show(final, as_json)
    if cancel.is_set() and final.status in FAILED:
        print(
            f"dmdesk: stopped; run #{final.id} is {final.status.value}. Continue it with: "
            f"dmdesk proceed {final.id} --wait",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if final.status in FAILED:
        print(f"dmdesk: run #{final.id} failed: {final.error_message}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def follow(ctx: ServiceContext, run: RunView, as_json: bool) -> int:
    """`dmdesk run ID --follow`: poll the run (whoever runs it) until it no longer works, with
    the same progress output as --wait; the exit code is that of --wait (0, 1 failed)."""

    from dmdesk.app import recover  # late: the services
    from dmdesk.services.runs import TrainingRunService  # late: the services

    runs = TrainingRunService(ctx)
    bar = Bar()
    interval = min(1.0, ctx.config.stale_after_s / 6)
    try:
        while run.status in ACTIVE:
            phase = "generation" if run.status is RunStatus.GENERATING else "training"
            if phase == "generation":
                bar(
                    ProgressUpdate(
                        run_id=run.id,
                        phase="generation",
                        processed=run.processed_chunks,
                        total=max(1, run.total_chunks),
                        pair_count=run.pair_count,
                    )
                )
            else:
                bar(ProgressUpdate(run_id=run.id, phase="training", processed=0, total=1000))
            time.sleep(interval)
            recover(ctx)  # a job that died is seen to fail here, as in the window
            run = runs.get_run(run.id)
    finally:
        bar.close()
    show(run, as_json)
    if run.status in FAILED:
        print(f"dmdesk: run #{run.id} failed: {run.error_message}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def detach(ctx: ServiceContext, run: RunView, as_json: bool) -> int:
    """Hand the run's job to a detached dmdesk process."""
    from dmdesk.app import spawn_job_worker  # late: the services

    spawn_job_worker(ctx, run.id)
    show(run, as_json)
    if not as_json:
        print(f"Running in the background. Follow it with: dmdesk run {run.id}")
    return EXIT_OK


def start_job(ctx: ServiceContext, run: RunView, args: argparse.Namespace) -> int:
    if args.wait:
        return wait(ctx, run, args.json)
    return detach(ctx, run, args.json)
