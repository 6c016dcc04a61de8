"""`main`: parse, load the settings, call the command's handler, and map what ends it to an exit
code (DESIGN.md "CLI" contract): 0 success; 1 the awaited run ended failed, or an unexpected
error; 2 usage or invalid settings; 3 refused by a rule; 4 no such run; 130 interrupted; 141
the reader of our output left. No traceback reaches the user unless `--debug` is given."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path

import platformdirs

from dmdesk.cli.parser import build_parser
from dmdesk.config import APP_NAME, SettingsFileBroken, load_config
from dmdesk.domain.errors import EXIT_FAILED, DmdeskError
from dmdesk.secrets import redact


def dispatch(args: argparse.Namespace) -> int:
    from dmdesk import app  # late: SQLAlchemy, the services

    cmd = args.command or "gui"
    settings_problem: SettingsFileBroken | None = None
    try:
        config = load_config()
    except SettingsFileBroken as exc:
        window = cmd == "gui" or (cmd == "demo" and not args.no_gui)
        if not (window or (cmd == "settings" and args.set and args.replace_broken_file)):
            raise
        # The window says so and may go on without the file (which it never overwrites unless
        # the admin chooses to replace it); --replace-broken-file is that choice on the CLI.
        settings_problem = exc if window else None
        config = load_config(use_file=False)
    args.settings_problem = settings_problem
    app.setup_logging(config.data_dir, debug=args.debug)
    code: int = args.func(args, config)
    return code


def _log_path() -> str:
    """Where unexpected errors are logged (set up here if the failure came before start-up)."""
    from dmdesk.app import log_file, setup_logging  # late: the services

    path = log_file()
    if path is None:
        data_dir = os.environ.get("DMDESK_DATA_DIR") or platformdirs.user_data_dir(APP_NAME)
        setup_logging(Path(data_dir))
        path = log_file()
    return str(path) if path else "(no log file could be written)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return dispatch(args)
    except DmdeskError as exc:
        print(f"dmdesk: {redact(exc.message)}", file=sys.stderr)
        if args.debug:
            traceback.print_exc()
        return exc.exit_code
    except KeyboardInterrupt:
        print("dmdesk: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dmdesk review 1 --list | head`: the reader left; so do we
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        where = _log_path()
        run = getattr(args, "run_id", None)
        logging.getLogger("dmdesk.cli").error(
            "unexpected error in `dmdesk %s`%s",
            args.command or "gui",
            f" (run {run})" if run else "",
            exc_info=exc,
        )
        print(
            f"dmdesk: unexpected error: {type(exc).__name__}: {redact(str(exc))}. "
            f"Details are in {where} (or run again with --debug).",
            file=sys.stderr,
        )
        return EXIT_FAILED
