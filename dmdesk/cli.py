"""The `dmdesk` command (DESIGN.md "CLI" contract).

Exit codes: 0 success; 1 the awaited run ended failed, or an unexpected error; 2 usage or invalid
settings; 3 refused by a rule; 4 no such run. `--json` prints one JSON value. No traceback
reaches the user unless `--debug` is given.

Without `--wait`, `generate`, `proceed` and `train` hand the job to a detached dmdesk process
(`dmdesk _job`), which keeps the run's heartbeat; `dmdesk run ID` follows it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import traceback
from typing import Any

from dmdesk.domain.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    DmdeskError,
    InvalidSettings,
)
from dmdesk.domain.models import ProgressUpdate, RunView
from dmdesk.domain.status import FAILED, RunStatus


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors: exit 2 with a short message
        self.print_usage(sys.stderr)
        print(f"dmdesk: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _run_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"run id must be a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("run id must be positive")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dmdesk", description="Deep Memory training for DeepLake knowledge bases.")
    p.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    gui = sub.add_parser("gui", help="open the window (the default)")
    gui.add_argument("--smoke", action="store_true", help="exit 0 once the window is shown")
    d = sub.add_parser("demo", help="build (once) the offline demo knowledge base, then open it")
    d.add_argument("--no-gui", action="store_true")
    d.add_argument("--smoke", action="store_true", help="exit 0 once the window is shown")

    s = sub.add_parser("settings", help="show (or --set) the Deep Memory settings")
    s.add_argument("--json", action="store_true")
    s.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="change a setting (saved to the settings file)",
    )

    r = sub.add_parser("runs", help="all runs, newest first")
    r.add_argument("--json", action="store_true")

    one = sub.add_parser("run", help="one run")
    one.add_argument("run_id", type=_run_id)
    one.add_argument("--json", action="store_true")

    g = sub.add_parser("generate", help="start a generation run")
    g.add_argument("--wait", action="store_true", help="follow it with a progress bar")
    g.add_argument("--json", action="store_true")

    pr = sub.add_parser("proceed", help="resume a failed run (either phase)")
    pr.add_argument("run_id", type=_run_id)
    pr.add_argument("--wait", action="store_true")
    pr.add_argument("--json", action="store_true")

    rm = sub.add_parser("remove", help="delete a failed run and its pairs")
    rm.add_argument("run_id", type=_run_id)
    rm.add_argument("--yes", action="store_true", help="confirm the deletion")

    rv = sub.add_parser("review", help="approve or reject pairs")
    rv.add_argument("run_id", type=_run_id)
    act = rv.add_mutually_exclusive_group(required=True)
    act.add_argument("--approve-all", action="store_true")
    act.add_argument("--approve", nargs="+", type=_run_id, metavar="ID")
    act.add_argument("--reject", nargs="+", type=_run_id, metavar="ID")
    act.add_argument("--list", action="store_true", help="print the pairs (JSON lines)")
    rv.add_argument(
        "--include-flagged",
        action="store_true",
        help="with --approve-all: approve the pairs the quality filters flagged too",
    )

    ac = sub.add_parser("activate", help="choose the model search uses (or --none)")
    which = ac.add_mutually_exclusive_group(required=True)
    which.add_argument("run_id", type=_run_id, nargs="?")
    which.add_argument("--none", action="store_true", help="stop using Deep Memory")

    ex = sub.add_parser("export", help="write a run's approved pairs (JSONL or BEIR)")
    ex.add_argument("run_id", type=_run_id)
    ex.add_argument("dest", help="a .jsonl file (jsonl) or a folder (beir)")
    ex.add_argument("--format", choices=("jsonl", "beir"), default="jsonl")

    t = sub.add_parser("train", help="train on the approved pairs")
    t.add_argument("run_id", type=_run_id)
    t.add_argument("--wait", action="store_true")
    t.add_argument("--json", action="store_true")

    se = sub.add_parser("search", help="search the store")
    se.add_argument("query")
    se.add_argument("--deep-memory", action="store_true")
    se.add_argument("-k", type=int, default=5)
    se.add_argument("--json", action="store_true")

    im = sub.add_parser("import", help="add a BEIR-style corpus to the local store")
    im.add_argument("corpus")

    ev = sub.add_parser("evaluate", help="BEIR-style recall@k and MRR")
    ev.add_argument("queries")
    ev.add_argument("qrels")
    ev.add_argument("-k", default="1,3,5,10")
    ev.add_argument("--json", action="store_true")

    job = sub.add_parser("_job")  # internal: the detached worker of a run
    job.add_argument("run_id", type=_run_id)
    job.add_argument("--owner", required=True)
    return p


# -- output ------------------------------------------------------------------------------------


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, default=str))


def _fmt_time(run: RunView) -> str:
    return run.created_at.strftime("%Y-%m-%d %H:%M")


def _print_runs(runs: list[RunView]) -> None:
    if not runs:
        print("No runs yet. `dmdesk generate` starts one.")
        return
    print(f"{'ID':>5}  {'STATUS':<18} {'PROGRESS':<14} {'PAIRS':>7}  {'CREATED':<16}  ERROR")
    for r in runs:
        err = (r.error_message or "").replace("\n", " ")
        err = err if len(err) <= 60 else err[:57] + "..."
        print(
            f"{r.id:>5}  {r.status.value:<18} {r.progress_text:<14} {r.pair_count:>7}  "
            f"{_fmt_time(r):<16}  {err}"
        )


def _print_run(run: RunView) -> None:
    print(f"Run #{run.id}: {run.status.value}")
    print(
        f"  progress   {run.processed_chunks}/{run.total_chunks} chunks, {run.pair_count} pairs"
        f" ({run.approved_count} approved)"
    )
    print(
        f"  created    {run.created_at:%Y-%m-%d %H:%M:%S} UTC, updated "
        f"{run.updated_at:%Y-%m-%d %H:%M:%S} UTC"
    )
    if run.deeplake_job_id:
        print(f"  job id     {run.deeplake_job_id}")
    if run.metrics:
        _print_metrics(run.metrics)
    if run.status is RunStatus.COMPLETED:
        state = "in use by search" if run.model_active else "not in use"
        print(f"  model      {state}")
        if run.activation_note:
            print(f"  guard      {run.activation_note}")
    if run.error_message:
        print(f"  error      {run.error_message}")
    if run.status in FAILED:
        print(f"  next       dmdesk proceed {run.id}   or   dmdesk remove {run.id} --yes")


def _print_metrics(metrics: dict[str, Any]) -> None:
    before, after = metrics.get("before"), metrics.get("after")
    if isinstance(before, dict) and isinstance(after, dict):
        where = metrics.get("evaluated_on", "held-out pairs")
        print(f"  metrics    on {metrics.get('heldout_pairs', '?')} {where} (without → with):")
        for key in ("recall@1", "recall@3", "recall@5", "recall@10", "mrr"):
            if key in before and key in after:
                print(f"             {key:<10} {before[key]:.3f} → {after[key]:.3f}")
        decision = metrics.get("activation") or {}
        if decision.get("small_sample"):
            print("  warning    a small sample: the figures are uncertain (see the interval)")
    else:
        summary = {k: v for k, v in metrics.items() if k not in ("heldout_ranks", "activation")}
        print(f"  metrics    {json.dumps(summary)}")


def _show(run: RunView, as_json: bool) -> None:
    if as_json:
        _print_json(run.to_json())
    else:
        _print_run(run)


# -- jobs --------------------------------------------------------------------------------------


class _Bar:
    """A terminal progress bar fed by the service's progress callback (tqdm, on stderr)."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._phase = ""

    def __call__(self, u: ProgressUpdate) -> None:
        from tqdm import tqdm

        if self._bar is None or self._phase != u.phase:
            if self._bar is not None:
                self._bar.close()
            unit = "chunk" if u.phase == "generation" else "‰"
            self._bar = tqdm(
                total=u.total,
                desc=u.phase,
                unit=unit,
                file=sys.stderr,
                disable=None,
                dynamic_ncols=True,
            )
            self._phase = u.phase
        self._bar.n = u.processed
        if u.phase == "generation":
            self._bar.set_postfix_str(f"{u.pair_count} pairs", refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


EXIT_INTERRUPTED = 130


def _wait(ctx: Any, run: RunView, as_json: bool) -> int:
    """Run the job here, with a progress bar.

    Ctrl-C (SIGINT) or SIGTERM stops it cooperatively: a signal handler sets the job's cancel
    flag — no KeyboardInterrupt races the wait (on Python 3.11 an interrupt inside
    `Thread.join` made a still-running thread look finished, and its result was read before it
    existed: `KeyError: 'run'`, the run left `generating`). The run ends failed and resumable,
    the process exits 130 with the command that continues it. A second signal exits at once;
    the run is then recovered as interrupted once its heartbeat is stale."""
    import signal

    from dmdesk.services.runs import TrainingRunService

    runs = TrainingRunService(ctx)
    cancel = threading.Event()
    bar = _Bar()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["run"] = runs.run_job(run.id, bar, cancel)
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
    _show(final, as_json)
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


def _detach(ctx: Any, run: RunView, as_json: bool) -> int:
    """Hand the run's job to a detached dmdesk process."""
    from dmdesk.app import spawn_job_worker

    spawn_job_worker(ctx, run.id)
    _show(run, as_json)
    if not as_json:
        print(f"Running in the background. Follow it with: dmdesk run {run.id}")
    return EXIT_OK


def _start_job(ctx: Any, run: RunView, args: argparse.Namespace) -> int:
    if args.wait:
        return _wait(ctx, run, args.json)
    return _detach(ctx, run, args.json)


# -- commands ----------------------------------------------------------------------------------


NULLABLE_SETTINGS = {"vector_store_path", "llm_base_url", "chunk_limit"}


def _parse_sets(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; an empty VALUE unsets an optional setting and is validated (and refused,
    e.g. an empty model name) for the others."""
    changes: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidSettings(f"--set needs KEY=VALUE, got {item!r}")
        key, value = key.strip(), value.strip()
        changes[key] = None if (not value and key in NULLABLE_SETTINGS) else value
    return changes


def _parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise InvalidSettings(f"-k takes whole numbers separated by commas, not {text!r}") from None
    if not ks or ks[0] < 1:
        raise InvalidSettings("-k takes positive whole numbers, e.g. 1,3,5,10")
    return ks


def _retrieval(cmd: str, args: argparse.Namespace, ctx: Any) -> int:
    from pathlib import Path

    from dmdesk.services import retrieval

    try:
        if cmd == "search":
            hits = retrieval.search(ctx, args.query, args.k, args.deep_memory)
            if args.json:
                _print_json([{"id": h.id, "score": h.score, "text": h.text} for h in hits])
            else:
                for h in hits:
                    text = " ".join(h.text.split())
                    print(f"{h.score:7.4f}  {h.id}  {text[:100]}")
            return EXIT_OK
        if cmd == "import":
            bar = _Bar()
            result = retrieval.import_corpus(
                ctx,
                Path(args.corpus),
                lambda done, total: bar(
                    ProgressUpdate(run_id=0, phase="generation", processed=done, total=total)
                ),
            )
            bar.close()
            print(
                f"Imported {result['imported']} documents into {ctx.config.vector_store_path}"
                f" ({result['skipped']} already there)."
            )
            return EXIT_OK
        result = retrieval.evaluate(ctx, Path(args.queries), Path(args.qrels), _parse_ks(args.k))
        if args.json:
            _print_json({k: v for k, v in result.items() if k in ("without", "with")})
        else:
            for name in ("without", "with"):
                if name in result:
                    figures = "  ".join(
                        f"{k} {v:.3f}" for k, v in result[name].items() if k != "queries"
                    )
                    print(f"{name + ' Deep Memory':<22} {figures}")
            if "with" not in result:
                print("(no Deep Memory is active for this store: train a run to compare)")
        return EXIT_OK
    finally:
        ctx.dispose()


def dispatch(args: argparse.Namespace) -> int:
    from dmdesk import app
    from dmdesk.config import load_config
    from dmdesk.services import settings as settings_service
    from dmdesk.services.runs import TrainingRunService

    cmd = args.command or "gui"
    config = load_config()

    if cmd == "settings":
        if args.set:
            config = settings_service.update_settings(config, _parse_sets(args.set))
        resp = settings_service.get_settings(config)
        if args.json:
            _print_json(resp.model_dump(mode="json"))
        else:
            for k, v in resp.model_dump().items():
                print(f"{k:<28} {v}")
        return EXIT_OK

    if cmd == "demo" and args.no_gui:
        from dmdesk.demo import demo_store_path, ensure_demo

        bar = _Bar()
        config = ensure_demo(
            config,
            lambda done, total, _msg: bar(
                ProgressUpdate(run_id=0, phase="generation", processed=done, total=total)
            ),
        )
        bar.close()
        print(f"The demo knowledge base is ready: {demo_store_path(config)}")
        print(
            "Next: dmdesk generate --wait; dmdesk review RUN --approve-all; dmdesk train RUN --wait"
        )
        return EXIT_OK
    if cmd in ("gui", "demo"):
        from dmdesk.ui.main_window import run_gui

        return run_gui(config, smoke=getattr(args, "smoke", False), demo=cmd == "demo")

    if cmd in ("search", "import", "evaluate"):
        return _retrieval(cmd, args, app.start(config))

    if cmd == "_job":
        ctx = app.start(config, recover=False)
        ctx.owner = args.owner
        TrainingRunService(ctx).run_job(args.run_id)
        return EXIT_OK

    ctx = app.start(config)
    runs = TrainingRunService(ctx)
    try:
        if cmd == "runs":
            all_runs = runs.list_runs()
            if args.json:
                _print_json([r.to_json() for r in all_runs])
            else:
                _print_runs(all_runs)
            return EXIT_OK
        if cmd == "run":
            _show(runs.get_run(args.run_id), args.json)
            return EXIT_OK
        if cmd == "generate":
            return _start_job(ctx, runs.start_generation(), args)
        if cmd == "proceed":
            return _start_job(ctx, runs.proceed(args.run_id), args)
        if cmd == "train":
            return _start_job(ctx, runs.start_training(args.run_id), args)
        if cmd == "remove":
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
            runs.remove(args.run_id)
            print(f"Run #{args.run_id} and its pairs were deleted.")
            return EXIT_OK
        if cmd == "activate":
            from dmdesk.services import activation

            if args.none:
                previous = activation.deactivate(ctx)
                print(
                    "Search no longer uses Deep Memory"
                    + (f" (run #{previous}'s model is kept)." if previous else ".")
                )
            else:
                activation.activate(ctx, runs.get_run(args.run_id))
                print(f"Search now uses run #{args.run_id}'s model.")
            return EXIT_OK
        if cmd == "export":
            from pathlib import Path

            from dmdesk.services.export import export_pairs

            n = export_pairs(ctx, args.run_id, Path(args.dest), args.format)
            print(f"Wrote {n} approved pairs of run #{args.run_id} to {args.dest} ({args.format}).")
            return EXIT_OK
        if cmd == "review":
            if args.list:
                for pair in runs.list_pairs(args.run_id):
                    _print_json(pair.model_dump(mode="json"))
                return EXIT_OK
            if args.approve_all:
                n = runs.approve_all(args.run_id, include_flagged=args.include_flagged)
                print(f"Approved {n} pairs of run #{args.run_id}.")
                flagged = runs.review_counts(args.run_id)["flagged"]
                if flagged and not args.include_flagged:
                    print(
                        f"{flagged} pairs are flagged by the quality filters; those you did not "
                        f"approve stay rejected (`dmdesk review {args.run_id} --list` shows why, "
                        "--include-flagged approves them too). Pairs you rejected were left "
                        "alone."
                    )
            elif args.approve:
                n = runs.set_approval(args.run_id, args.approve, True)
                print(f"Approved {n} pairs of run #{args.run_id}.")
            else:
                n = runs.set_approval(args.run_id, args.reject, False)
                print(f"Rejected {n} pairs of run #{args.run_id}.")
            return EXIT_OK
    finally:
        ctx.dispose()
    raise InvalidSettings(f"Unknown command {cmd!r}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return dispatch(args)
    except DmdeskError as exc:
        from dmdesk.secrets import redact

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
        from dmdesk.secrets import redact

        if args.debug:
            traceback.print_exc()
        print(
            f"dmdesk: unexpected error: {type(exc).__name__}: {redact(str(exc))}. "
            "Run again with --debug for details, or see the log file.",
            file=sys.stderr,
        )
        return EXIT_FAILED
