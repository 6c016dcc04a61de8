"""The commands on a run's pairs and its model: `review`, `activate`, `export`."""

from __future__ import annotations

import argparse
from pathlib import Path

from dmdesk.cli.context import started
from dmdesk.cli.render import print_json, print_pairs
from dmdesk.config import DmdeskConfig
from dmdesk.domain.errors import EXIT_OK, InvalidSettings


def review(args: argparse.Namespace, config: DmdeskConfig) -> int:
    from dmdesk.services.runs import TrainingRunService  # late: the services

    with started(config) as ctx:
        runs = TrainingRunService(ctx)
        if args.list:
            pairs = runs.list_pairs(args.run_id)
            if args.json:
                for pair in pairs:
                    print_json(pair.model_dump(mode="json"))
            else:
                print_pairs(pairs)
            return EXIT_OK
        if args.approve_all:
            n = runs.approve_all(
                args.run_id, include_flagged=args.include_flagged, force=args.force
            )
            print(f"Approved {n} pairs of run #{args.run_id}.")
            flagged = runs.review_counts(args.run_id)["flagged"]
            if flagged and not (args.include_flagged or args.force):
                print(
                    f"{flagged} pairs are flagged by the quality filters; those you did not "
                    f"approve stay rejected (`dmdesk review {args.run_id} --list` shows why, "
                    "--include-flagged approves them too). Pairs you rejected were left "
                    "alone."
                )
        elif args.approve:
            if args.force or args.include_flagged:
                raise InvalidSettings("--force and --include-flagged go with --approve-all.")
            n = runs.set_approval(args.run_id, args.approve, True)
            print(f"Approved {n} pairs of run #{args.run_id}.")
        else:
            n = runs.set_approval(args.run_id, args.reject, False)
            print(f"Rejected {n} pairs of run #{args.run_id}.")
    return EXIT_OK


def activate(args: argparse.Namespace, config: DmdeskConfig) -> int:
    from dmdesk.services import activation  # late: the services
    from dmdesk.services.runs import TrainingRunService  # late: the services

    with started(config) as ctx:
        if args.none:
            previous = activation.deactivate(ctx)
            print(
                "Search no longer uses Deep Memory"
                + (f" (run #{previous}'s model is kept)." if previous else ".")
            )
        else:
            activation.activate(ctx, TrainingRunService(ctx).get_run(args.run_id))
            print(f"Search now uses run #{args.run_id}'s model.")
    return EXIT_OK


def export(args: argparse.Namespace, config: DmdeskConfig) -> int:
    from dmdesk.services.export import export as export_run  # late: the services

    with started(config) as ctx:
        print(export_run(ctx, args.run_id, Path(args.dest), args.format))
    return EXIT_OK
