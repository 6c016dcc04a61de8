"""The `dmdesk` command line (DESIGN.md "CLI" contract): every command and its options, each
bound to its handler with `set_defaults(func=…)`; a handler is `(args, config) -> exit code`."""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from dmdesk.cli import retrieval, review, runs, settings, window
from dmdesk.domain.errors import EXIT_USAGE


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # usage errors: exit 2 with a short message
        self.print_usage(sys.stderr)
        print(f"dmdesk: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def positive_id(what: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{what} must be a whole number, not {text!r}"
            ) from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{what} must be positive, not {value}")
        return value

    parse.__name__ = what.replace(" ", "_")
    return parse


RUN_ID = positive_id("run id")
PAIR_ID = positive_id("pair id")


def build_parser() -> argparse.ArgumentParser:
    # --debug is accepted anywhere on the line: before the command or among its options.
    common = Parser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks of unexpected errors",
    )
    p = Parser(
        prog="dmdesk",
        description="Deep Memory training for DeepLake knowledge bases.",
        parents=[common],
    )
    p.set_defaults(debug=False, func=window.gui)  # no command: the window
    p.add_argument(
        "--smoke",
        dest="top_smoke",
        action="store_true",
        help="with no command: open the window and exit 0 once it is shown",
    )
    sub = p.add_subparsers(dest="command", parser_class=Parser, metavar="COMMAND")

    def command(name: str, help_text: str | None, **kwargs: Any) -> argparse.ArgumentParser:
        if help_text is None:  # not listed in --help (internal)
            return sub.add_parser(name, parents=[common], **kwargs)
        return sub.add_parser(name, parents=[common], help=help_text, **kwargs)

    gui = command("gui", "open the window (the default)")
    gui.set_defaults(func=window.gui)
    gui.add_argument("--smoke", action="store_true", help="exit 0 once the window is shown")
    d = command("demo", "build (once) the offline demo knowledge base, then open it")
    d.set_defaults(func=window.demo)
    d.add_argument("--no-gui", action="store_true")
    d.add_argument("--smoke", action="store_true", help="exit 0 once the window is shown")

    s = command(
        "settings",
        "show (or --set) the Deep Memory settings",
        epilog=settings.epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.set_defaults(func=settings.show_or_set)
    s.add_argument("--json", action="store_true")
    s.add_argument(
        "--set",
        metavar="KEY=VALUE",
        nargs="+",
        action="extend",
        default=[],
        help="change one or more settings (saved typed to the settings file)",
    )
    s.add_argument(
        "--replace-broken-file",
        action="store_true",
        help="with --set: when the settings file cannot be read, keep it as a backup and "
        "write a new one with these settings",
    )

    r = command("runs", "all runs, newest first")
    r.set_defaults(func=runs.list_runs)
    r.add_argument("--json", action="store_true")

    one = command("run", "one run (--follow: until it ends, with a progress bar)")
    one.set_defaults(func=runs.one_run)
    one.add_argument("run_id", type=RUN_ID)
    one.add_argument("--json", action="store_true")
    one.add_argument(
        "--follow", action="store_true", help="follow the run until it is no longer working"
    )

    g = command("generate", "start a generation run")
    g.set_defaults(func=runs.generate)
    g.add_argument("--wait", action="store_true", help="follow it with a progress bar")
    g.add_argument("--json", action="store_true")
    g.add_argument(
        "--estimate",
        action="store_true",
        help="print the run's estimated tokens and cost, without calling the LLM or starting it",
    )

    def run_job_command(name: str, help_text: str, func: Any) -> None:
        """A command that starts the job of a run (proceed, train): RUN_ID [--wait] [--json]."""
        c = command(name, help_text)
        c.set_defaults(func=func)
        c.add_argument("run_id", type=RUN_ID)
        c.add_argument("--wait", action="store_true")
        c.add_argument("--json", action="store_true")

    run_job_command("proceed", "resume a failed run (either phase)", runs.proceed)

    rm = command("remove", "delete a failed run (or a generated run with no approved pair)")
    rm.set_defaults(func=runs.remove)
    rm.add_argument("run_id", type=RUN_ID)
    rm.add_argument("--yes", action="store_true", help="confirm the deletion")

    rv = command("review", "approve or reject pairs")
    rv.set_defaults(func=review.review)
    rv.add_argument("run_id", type=RUN_ID)
    act = rv.add_mutually_exclusive_group(required=True)
    act.add_argument(
        "--approve-all", action="store_true", help="approve every pair not reviewed yet"
    )
    act.add_argument("--approve", nargs="+", type=PAIR_ID, metavar="PAIR_ID")
    act.add_argument("--reject", nargs="+", type=PAIR_ID, metavar="PAIR_ID")
    act.add_argument(
        "--list",
        action="store_true",
        help="print the pairs as a table (id, verdict, question, chunk; with --json: JSON lines)",
    )
    rv.add_argument("--json", action="store_true", help="with --list: one JSON object a line")
    rv.add_argument(
        "--include-flagged",
        action="store_true",
        help="with --approve-all: approve the pairs the quality filters flagged too",
    )
    rv.add_argument(
        "--force",
        action="store_true",
        help="with --approve-all: approve every pair, the ones you rejected too",
    )

    ac = command("activate", "choose the model search uses (or --none)")
    ac.set_defaults(func=review.activate)
    which = ac.add_mutually_exclusive_group(required=True)
    which.add_argument("run_id", type=RUN_ID, nargs="?")
    which.add_argument("--none", action="store_true", help="stop using Deep Memory")

    ex = command(
        "export",
        "write a run's approved pairs (jsonl, beir) or its Deep Memory model for your "
        "application (sentence-transformers, safetensors)",
    )
    ex.set_defaults(func=review.export)
    ex.add_argument("run_id", type=RUN_ID)
    ex.add_argument(
        "dest", help="a .jsonl file (jsonl), or a new folder (beir and the model formats)"
    )
    ex.add_argument(
        "--format",
        choices=("jsonl", "beir", "sentence-transformers", "safetensors"),
        default="jsonl",
    )

    run_job_command("train", "train on the approved pairs", runs.train)

    se = command("search", "search the store")
    se.set_defaults(func=retrieval.search)
    se.add_argument("query")
    se.add_argument("--deep-memory", action="store_true")
    se.add_argument("-k", type=int, default=5)
    se.add_argument("--json", action="store_true")

    im = command("import", "add a BEIR-style corpus to the local store")
    im.set_defaults(func=retrieval.import_corpus)
    im.add_argument("corpus")

    ev = command(
        "evaluate",
        "recall@k and MRR on labelled questions (BEIR queries + qrels, or --csv); --save keeps "
        "them as the store's evaluation set, which every training run is judged on; with no "
        "file, the saved set",
    )
    ev.set_defaults(func=retrieval.evaluate)
    ev.add_argument("queries", nargs="?")
    ev.add_argument("qrels", nargs="?")
    ev.add_argument("--csv", metavar="FILE", help="rows of question,chunk_id")
    ev.add_argument("--save", action="store_true", help="keep them as the evaluation set")
    ev.add_argument("--forget", action="store_true", help="drop the saved evaluation set")
    ev.add_argument("-k", default="1,3,5,10")
    ev.add_argument("--json", action="store_true")

    job = command("_job", None)
    job.set_defaults(func=runs.job)  # internal: the detached worker of a run (not in --help)
    job.add_argument("run_id", type=RUN_ID)
    job.add_argument("--owner", required=True)
    # internal: the window's first start builds the demo store in a process of its own
    command("_demo-store", None).set_defaults(func=window.demo_store)
    return p
