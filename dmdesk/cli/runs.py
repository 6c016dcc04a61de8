"""The commands of runs: `runs`, `run`, `generate`, `proceed`, `train`, `remove`, and the
detached worker of a run (`_job`). Each opens its service context late (`dmdesk.cli.context`)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from dmdesk.cli.context import started
from dmdesk.cli.follow import follow, start_job
from dmdesk.cli.render import print_json, print_runs, show
from dmdesk.config import DmdeskConfig
from dmdesk.domain.errors import EXIT_FAILED, EXIT_OK, InvalidSettings
from dmdesk.domain.status import FAILED
from dmdesk.secrets import RedactingFormatter

if TYPE_CHECKING:
    from dmdesk.services.context import ServiceContext


def list_runs(args: argparse.Namespace, config: DmdeskConfig) -> int:
    from dmdesk.services.runs import TrainingRunService  # late: the services

    with started(config) as ctx:
        all_runs = TrainingRunService(ctx).list_runs()
    if args.json:
        print_json([r.to_json() for r in all_runs])
    else:
        print_runs(all_runs)
    return EXIT_OK


def one_run(args: argparse.Namespace, config: DmdeskConfig) -> int:
    from dmdesk.services.runs import TrainingRunService  # late: the services

    with started(config) as ctx:
        run = TrainingRunService(ctx).get_run(args.run_id)
        if args.follow:
            return follow(ctx, run, args.json)
    show(run, args.json)
    return EXIT_OK


def generate(args: argparse.Namespace, config: DmdeskConfig) -> int:
    from dmdesk.services.runs import TrainingRunService  # late: the services

    with started(config) as ctx:
        if args.estimate:
            return _estimate(ctx, args.json)
        return start_job(ctx, TrainingRunService(ctx).start_generation(), args)


def proceed(args: argparse.Namespace, config: DmdeskConfig) -> int:
    from dmdesk.services.runs import TrainingRunService  # late: the services

    with started(config) as ctx:
        return start_job(ctx, TrainingRunService(ctx).proceed(args.run_id), args)


def train(args: argparse.Namespace, config: DmdeskConfig) -> int:
    from dmdesk.services.runs import TrainingRunService  # late: the services

    with started(config) as ctx:
        return start_job(ctx, TrainingRunService(ctx).start_training(args.run_id), args)


def remove(args: argparse.Namespace, config: DmdeskConfig) -> int:
    from dmdesk.services.runs import TrainingRunService  # late: the services

    with started(config) as ctx:
        if not args.yes:
            if not sys.stdin.isatty():
                raise InvalidSettings(
                    f"Removing run #{args.run_id} deletes it and all its pairs; add --yes "
                    "to confirm."
                )
            answer = input(f"Delete run #{args.run_id} and all its pairs? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("Nothing deleted.")
                return EXIT_OK
        TrainingRunService(ctx).remove(args.run_id)
    print(f"Run #{args.run_id} and its pairs were deleted.")
    return EXIT_OK


def job(args: argparse.Namespace, config: DmdeskConfig) -> int:
    """The detached worker of a run (`dmdesk _job`): its stdout and stderr are the run's
    `job-N.log`, so it says there what it does, how the run ended and, on an unexpected error,
    the traceback (the log lines of dmdesk.log are copied there too)."""
    from dmdesk.app import LOG_FORMAT  # late: the services
    from dmdesk.jobs.runner import run_job  # late: the jobs

    with started(config, recover_runs=False) as ctx:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(RedactingFormatter(LOG_FORMAT))
        logging.getLogger().addHandler(handler)
        ctx.owner = args.owner
        final = run_job(ctx, args.run_id)
    print(f"run #{final.id}: {final.status.value}", flush=True)
    if final.status in FAILED:
        print(f"run #{final.id}: {final.error_message}", flush=True)
        return EXIT_FAILED
    return EXIT_OK


def _estimate(ctx: ServiceContext, as_json: bool) -> int:
    from dmdesk.services.estimate import estimate_with  # late: the services
    from dmdesk.services.settings import availability  # late: the services

    _, available, reason = availability(ctx.config)
    if not ctx.config.vector_store_path:
        raise InvalidSettings(reason or "No vector store is configured.")
    est = estimate_with(ctx)
    if as_json:
        print_json(est.to_json() | {"text": est.text})
        return EXIT_OK
    print(est.text)
    if not available:
        print(f"Note: {reason}")
    return EXIT_OK
