"""The `dmdesk` command (DESIGN.md "CLI" contract).

Exit codes: 0 success; 1 the awaited run ended failed, or an unexpected error; 2 usage or invalid
settings; 3 refused by a rule; 4 no such run. `--json` prints one JSON value. No traceback
reaches the user unless `--debug` is given.

Without `--wait`, `generate`, `proceed` and `train` hand the job to a detached dmdesk process
(`dmdesk _job`), which keeps the run's heartbeat; `dmdesk run ID` follows it.

The services, `dmdesk.app`, the demo and the window are imported inside the commands that use
them (each such import says `# late`): they load SQLAlchemy, the openai SDK, numpy or Qt
(0.3–1.2 s), which `dmdesk --help`, `dmdesk settings` and a usage error should not wait for.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import traceback
from typing import Any, NoReturn

from dmdesk.config import (
    APP_NAME,
    SettingsFileBroken,
    config_file,
    describe_settings,
    env_overridden,
    load_config,
)
from dmdesk.deepmemory import evalset
from dmdesk.deepmemory.guard import verdict_lines
from dmdesk.domain.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    DmdeskError,
    InvalidSettings,
)
from dmdesk.domain.models import ProgressUpdate, RunView
from dmdesk.domain.snapshot import open_batches
from dmdesk.domain.status import ACTIVE, FAILED, RunStatus
from dmdesk.secrets import RedactingFormatter, redact


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # usage errors: exit 2 with a short message
        self.print_usage(sys.stderr)
        print(f"dmdesk: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _positive_id(what: str) -> Any:
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


_run_id = _positive_id("run id")
_pair_id = _positive_id("pair id")

SETTINGS_EPILOG = """settings (KEY: type, range — environment variable):
{rows}
An environment variable wins over a saved value (dmdesk warns when you set such a key).
An empty VALUE removes an optional setting (vector_store_path, llm_base_url, chunk_limit,
budget_usd)."""


def _settings_epilog() -> str:

    rows = "\n".join(f"  {d.key:<24} {d.kind}, {d.range} — {d.env}" for d in describe_settings())
    return SETTINGS_EPILOG.format(rows=rows)


def build_parser() -> argparse.ArgumentParser:
    # --debug is accepted anywhere on the line: before the command or among its options.
    common = _Parser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks of unexpected errors",
    )
    p = _Parser(
        prog="dmdesk",
        description="Deep Memory training for DeepLake knowledge bases.",
        parents=[common],
    )
    p.set_defaults(debug=False)
    p.add_argument(
        "--smoke",
        dest="top_smoke",
        action="store_true",
        help="with no command: open the window and exit 0 once it is shown",
    )
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    def command(name: str, help_text: str | None, **kwargs: Any) -> argparse.ArgumentParser:
        if help_text is None:  # not listed in --help (internal)
            return sub.add_parser(name, parents=[common], **kwargs)
        return sub.add_parser(name, parents=[common], help=help_text, **kwargs)

    gui = command("gui", "open the window (the default)")
    gui.add_argument("--smoke", action="store_true", help="exit 0 once the window is shown")
    d = command("demo", "build (once) the offline demo knowledge base, then open it")
    d.add_argument("--no-gui", action="store_true")
    d.add_argument("--smoke", action="store_true", help="exit 0 once the window is shown")

    s = command(
        "settings",
        "show (or --set) the Deep Memory settings",
        epilog=_settings_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    r.add_argument("--json", action="store_true")

    one = command("run", "one run (--follow: until it ends, with a progress bar)")
    one.add_argument("run_id", type=_run_id)
    one.add_argument("--json", action="store_true")
    one.add_argument(
        "--follow", action="store_true", help="follow the run until it is no longer working"
    )

    g = command("generate", "start a generation run")
    g.add_argument("--wait", action="store_true", help="follow it with a progress bar")
    g.add_argument("--json", action="store_true")
    g.add_argument(
        "--estimate",
        action="store_true",
        help="print the run's estimated tokens and cost, without calling the LLM or starting it",
    )

    pr = command("proceed", "resume a failed run (either phase)")
    pr.add_argument("run_id", type=_run_id)
    pr.add_argument("--wait", action="store_true")
    pr.add_argument("--json", action="store_true")

    rm = command("remove", "delete a failed run (or a generated run with no approved pair)")
    rm.add_argument("run_id", type=_run_id)
    rm.add_argument("--yes", action="store_true", help="confirm the deletion")

    rv = command("review", "approve or reject pairs")
    rv.add_argument("run_id", type=_run_id)
    act = rv.add_mutually_exclusive_group(required=True)
    act.add_argument(
        "--approve-all", action="store_true", help="approve every pair not reviewed yet"
    )
    act.add_argument("--approve", nargs="+", type=_pair_id, metavar="PAIR_ID")
    act.add_argument("--reject", nargs="+", type=_pair_id, metavar="PAIR_ID")
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
    which = ac.add_mutually_exclusive_group(required=True)
    which.add_argument("run_id", type=_run_id, nargs="?")
    which.add_argument("--none", action="store_true", help="stop using Deep Memory")

    ex = command(
        "export",
        "write a run's approved pairs (jsonl, beir) or its Deep Memory model for your "
        "application (sentence-transformers, safetensors)",
    )
    ex.add_argument("run_id", type=_run_id)
    ex.add_argument(
        "dest", help="a .jsonl file (jsonl), or a new folder (beir and the model formats)"
    )
    ex.add_argument(
        "--format",
        choices=("jsonl", "beir", "sentence-transformers", "safetensors"),
        default="jsonl",
    )

    t = command("train", "train on the approved pairs")
    t.add_argument("run_id", type=_run_id)
    t.add_argument("--wait", action="store_true")
    t.add_argument("--json", action="store_true")

    se = command("search", "search the store")
    se.add_argument("query")
    se.add_argument("--deep-memory", action="store_true")
    se.add_argument("-k", type=int, default=5)
    se.add_argument("--json", action="store_true")

    im = command("import", "add a BEIR-style corpus to the local store")
    im.add_argument("corpus")

    ev = command(
        "evaluate",
        "recall@k and MRR on labelled questions (BEIR queries + qrels, or --csv); --save keeps "
        "them as the store's evaluation set, which every training run is judged on; with no "
        "file, the saved set",
    )
    ev.add_argument("queries", nargs="?")
    ev.add_argument("qrels", nargs="?")
    ev.add_argument("--csv", metavar="FILE", help="rows of question,chunk_id")
    ev.add_argument("--save", action="store_true", help="keep them as the evaluation set")
    ev.add_argument("--forget", action="store_true", help="drop the saved evaluation set")
    ev.add_argument("-k", default="1,3,5,10")
    ev.add_argument("--json", action="store_true")

    job = command("_job", None)  # internal: the detached worker of a run (not in --help)
    job.add_argument("run_id", type=_run_id)
    job.add_argument("--owner", required=True)
    # internal: the window's first start builds the demo store in a process of its own
    command("_demo-store", None)
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
    selection = run.settings.selection if run.settings else None
    if selection is not None and selection.limited_by:
        print(
            f"  selection  the first {selection.rows} of {selection.store_rows} chunks "
            f"(limited by {selection.limited_by})"
        )
    if run.usage_text:
        print(f"  LLM usage  {run.usage_text}")
    batches = run.settings.batches if run.settings else ()
    if batches:
        waiting = len(open_batches(run.settings))
        print(f"  batches    {len(batches)} sent to the Batch API, {waiting} not collected yet")
    if run.deeplake_job_id:
        print(f"  job id     {run.deeplake_job_id}")
    if run.metrics:
        _print_metrics(run.metrics)
    if run.status is RunStatus.COMPLETED:
        state = "in use by search" if run.model_active else "not in use"
        print(f"  model      {state}")
        if run.activation_note:
            print(f"  guard      {run.activation_note}")

        for line in verdict_lines(run.metrics):
            print(f"  judged     {line}")
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


def _verdict(approved: bool | None, flags: str | None) -> str:
    verdict = {True: "approved", False: "rejected", None: "to review"}[approved]
    return verdict + (" (flagged)" if flags else "")


def _print_pairs(pairs: list[Any]) -> None:
    """`review N --list`: a table a person reads — id, verdict, question, chunk; a flagged
    pair's reasons under it."""
    width = shutil.get_terminal_size((120, 24)).columns
    idw = max([2, *(len(str(p.id)) for p in pairs)])
    chunkw = min(24, max([5, *(len(p.chunk_id) for p in pairs)]))
    qw = max(20, width - idw - 20 - chunkw - 6)
    print(f"{'id':>{idw}}  {'verdict':<20}  {'question':<{qw}}  chunk")
    for p in pairs:
        q = p.question if len(p.question) <= qw else p.question[: qw - 1] + "…"
        print(f"{p.id:>{idw}}  {_verdict(p.approved, p.flags):<20}  {q:<{qw}}  {p.chunk_id}")
        if p.flags:
            print(f"{'':>{idw}}  {'':<20}  ↳ {p.flags}")
    n = len(pairs)
    approved = sum(p.approved is True for p in pairs)
    print(
        f"{n} pairs: {approved} approved, {sum(p.approved is False for p in pairs)} rejected, "
        f"{sum(p.approved is None for p in pairs)} to review; --json for JSON lines"
    )


class _ImportProgress:
    """`dmdesk import`'s own progress on stderr: "embedding 1,000 documents: 256/1,000", a line
    at most every `interval` seconds and the last one, then "writing 1,000 documents"."""

    def __init__(self, interval: float = 2.0) -> None:
        self._interval, self._last = interval, 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        import time

        if stage == "writing":
            print(f"writing {total:,} documents to the store", file=sys.stderr, flush=True)
            return
        now = time.monotonic()
        if done == total or done == 0 or now - self._last >= self._interval:
            self._last = now
            print(f"embedding {total:,} documents: {done:,}/{total:,}", file=sys.stderr, flush=True)


class _Bar:
    """Progress of a job on stderr, fed by the service's progress callback.

    On a terminal: a tqdm bar (chunks for generation; a percentage for training, whose progress
    is per mille — no rate, which would read "‰/s"). Elsewhere (a log file, CI): a plain line at
    the start, every `interval` seconds and at the end, so a log shows the job moving."""

    def __init__(self, interval: float = 5.0) -> None:
        self._bar: Any = None
        self._phase = ""
        self._tty = sys.stderr.isatty()
        self._interval = interval
        self._last_line = 0.0
        self._pending: ProgressUpdate | None = None

    def __call__(self, u: ProgressUpdate) -> None:
        if not self._tty:
            self._line(u)
            return
        from tqdm import tqdm

        if self._bar is None or self._phase != u.phase:
            if self._bar is not None:
                self._bar.close()
            if u.phase == "generation":
                options: dict[str, Any] = {"unit": "chunk"}
            else:
                options = {"bar_format": "{desc}: {percentage:3.0f}%|{bar}| {elapsed}{postfix}"}
            self._bar = tqdm(
                total=u.total,
                desc=u.phase,
                file=sys.stderr,
                dynamic_ncols=True,
                **options,
            )
            self._phase = u.phase
        self._bar.n = u.processed
        if u.phase == "generation":
            pace = f", {u.message}" if u.message else ""
            self._bar.set_postfix_str(f"{u.pair_count} pairs{pace}", refresh=False)
        elif u.message:
            self._bar.set_postfix_str(u.message[:60], refresh=False)
        self._bar.refresh()

    @staticmethod
    def _text(u: ProgressUpdate) -> str:
        if u.phase == "generation":
            text = f"generation: {u.processed}/{u.total} chunks, {u.pair_count} pairs"
        else:
            text = f"training: {u.processed * 100 // max(1, u.total)}%"
        return text + (f" — {u.message}" if u.message else "")

    def _line(self, u: ProgressUpdate) -> None:
        import time

        now = time.monotonic()
        if self._phase != u.phase or now - self._last_line >= self._interval:
            print(self._text(u), file=sys.stderr, flush=True)
            self._phase, self._last_line, self._pending = u.phase, now, None
        else:
            self._pending = u

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._pending is not None:  # the last state is always printed
            print(self._text(self._pending), file=sys.stderr, flush=True)
            self._pending = None


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

    from dmdesk.jobs.runner import run_job  # late
    from dmdesk.services.runs import TrainingRunService  # late

    runs = TrainingRunService(ctx)
    cancel = threading.Event()
    bar = _Bar()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["run"] = run_job(runs.ctx, run.id, bar, cancel)
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


def _demo_store(config: Any) -> int:
    """Build the demo store (`dmdesk _demo-store`, the window's first start): one line
    `progress DONE TOTAL MESSAGE` on stdout per step, for the window that reads them. The
    settings are left to the window (dmdesk.demo.finish_demo)."""
    from dmdesk.demo import build_demo_store, demo_store_path, store_ready  # late

    def report(done: int, total: int, message: str) -> None:
        print(f"progress {done} {total} {message}", flush=True)

    if not store_ready(config):
        build_demo_store(demo_store_path(config), report)
    return EXIT_OK


def _job(ctx: Any, args: argparse.Namespace) -> int:
    """The detached worker of a run (`dmdesk _job`): its stdout and stderr are the run's
    `job-N.log`, so it says there what it does, how the run ended and, on an unexpected error,
    the traceback (the log lines of dmdesk.log are copied there too)."""
    import logging

    from dmdesk.app import LOG_FORMAT  # late
    from dmdesk.jobs.runner import run_job  # late

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(LOG_FORMAT))
    logging.getLogger().addHandler(handler)
    ctx.owner = args.owner
    try:
        final = run_job(ctx, args.run_id)
    finally:
        ctx.dispose()
    print(f"run #{final.id}: {final.status.value}", flush=True)
    if final.status in FAILED:
        print(f"run #{final.id}: {final.error_message}", flush=True)
        return EXIT_FAILED
    return EXIT_OK


def _follow(ctx: Any, run: RunView, as_json: bool) -> int:
    """`dmdesk run ID --follow`: poll the run (whoever runs it) until it no longer works, with
    the same progress output as --wait; the exit code is that of --wait (0, 1 failed)."""
    import time

    from dmdesk.app import recover  # late
    from dmdesk.services.runs import TrainingRunService  # late

    runs = TrainingRunService(ctx)
    bar = _Bar()
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
    _show(run, as_json)
    if run.status in FAILED:
        print(f"dmdesk: run #{run.id} failed: {run.error_message}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _detach(ctx: Any, run: RunView, as_json: bool) -> int:
    """Hand the run's job to a detached dmdesk process."""
    from dmdesk.app import spawn_job_worker  # late

    spawn_job_worker(ctx, run.id)
    _show(run, as_json)
    if not as_json:
        print(f"Running in the background. Follow it with: dmdesk run {run.id}")
    return EXIT_OK


def _estimate(ctx: Any, as_json: bool) -> int:
    from dmdesk.services.estimate import estimate_with  # late
    from dmdesk.services.settings import availability  # late

    _, available, reason = availability(ctx.config)
    if not ctx.config.vector_store_path:
        raise InvalidSettings(reason or "No vector store is configured.")
    est = estimate_with(ctx)
    if as_json:
        _print_json(est.to_json() | {"text": est.text})
        return EXIT_OK
    print(est.text)
    if not available:
        print(f"Note: {reason}")
    return EXIT_OK


def _start_job(ctx: Any, run: RunView, args: argparse.Namespace) -> int:
    if args.wait:
        return _wait(ctx, run, args.json)
    return _detach(ctx, run, args.json)


# -- commands ----------------------------------------------------------------------------------


NULLABLE_SETTINGS = {"vector_store_path", "llm_base_url", "chunk_limit", "budget_usd"}


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


def _labelled(args: argparse.Namespace, ctx: Any) -> tuple[list[str], list[list[str]], str]:
    """The labelled questions `dmdesk evaluate` measures — the files given, else the store's
    saved evaluation set — as (questions, relevant chunk ids, source)."""
    from pathlib import Path

    from dmdesk.services import retrieval  # late

    if args.csv and args.queries:
        raise InvalidSettings("Give either QUERIES.jsonl QRELS.tsv or --csv FILE, not both.")
    if args.queries and not args.qrels:
        raise InvalidSettings("QUERIES.jsonl needs its QRELS.tsv (query-id, corpus-id, score).")
    if args.csv:
        return *retrieval.read_question_csv(Path(args.csv)), str(args.csv)
    if args.queries:
        return *retrieval.read_labelled(Path(args.queries), Path(args.qrels)), str(args.queries)
    if args.save:
        raise InvalidSettings("--save needs the questions: QUERIES.jsonl QRELS.tsv or --csv FILE.")
    saved = retrieval.saved_evaluation_set(ctx)
    if saved is None:
        raise InvalidSettings(
            "No evaluation set is saved for this store: give QUERIES.jsonl QRELS.tsv or "
            "--csv FILE (add --save to keep them as the store's evaluation set)."
        )
    return saved.questions, saved.relevant, saved.source


def _retrieval(cmd: str, args: argparse.Namespace, ctx: Any) -> int:
    from pathlib import Path

    from dmdesk.services import retrieval  # late

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
            counts = retrieval.import_corpus(ctx, Path(args.corpus), _ImportProgress())
            print(
                f"Imported {counts['imported']} documents into {ctx.config.vector_store_path}"
                f" ({counts['skipped']} already there)."
            )
            return EXIT_OK
        ks = _parse_ks(args.k)
        if args.forget:
            gone = evalset.remove(ctx.config.data_dir, ctx.config.vector_store_path or "")
            print("Evaluation set removed." if gone else "No evaluation set was saved.")
            return EXIT_OK
        questions, relevant, source = _labelled(args, ctx)
        result = retrieval.evaluate(
            ctx, questions, relevant, ks, save_as=source if args.save else None
        )
        if "saved" in result:
            print(
                f"Saved as this store's evaluation set: {result['saved']}. Every training run "
                "is now judged on it too.",
                file=sys.stderr if args.json else sys.stdout,
            )
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


def _settings(config: Any, args: argparse.Namespace) -> int:
    from dmdesk.services import settings as settings_service  # late

    if args.set:
        changes = _parse_sets(args.set)
        config = settings_service.update_settings(
            config, changes, replace_broken=args.replace_broken_file
        )
        if not args.json:
            print(f"Saved {', '.join(changes)} to {config_file()}.")
        for key in env_overridden(changes):
            print(
                f"dmdesk: warning: DMDESK_{key.upper()} is set in the environment and wins over "
                f"the saved {key} (in effect: {getattr(config, key)!r}).",
                file=sys.stderr,
            )
    resp = settings_service.get_settings(config)
    if args.json:
        _print_json(resp.model_dump(mode="json"))
        return EXIT_OK
    values = resp.model_dump()
    print(f"{'question writer':<28} {values.pop('generator')}")
    local = values.pop("generator_is_local")
    for k, v in values.items():
        note = ""
        if local and k in ("llm_model", "llm_base_url"):
            note = "   (not used: no API key or URL, so the local model writes the questions)"
        elif k in env_overridden([k]):
            note = f"   (from DMDESK_{k.upper()})"
        print(f"{k:<28} {v}{note}")
    return EXIT_OK


def dispatch(args: argparse.Namespace) -> int:
    from dmdesk import app  # late
    from dmdesk.services.runs import TrainingRunService  # late

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
    app.setup_logging(config.data_dir, debug=args.debug)

    if cmd == "settings":
        return _settings(config, args)

    if cmd == "demo" and args.no_gui:
        from dmdesk.demo import demo_store_path, ensure_demo  # late

        # The store's build is an import (its chunks embedded), not a generation: said as
        # `dmdesk import` says it ("generation: 533/533 chunks, 0 pairs" read as a run).
        building = _ImportProgress()
        config = ensure_demo(config, lambda done, total, _msg: building("embedding", done, total))
        print(f"The demo knowledge base is ready: {demo_store_path(config)}")
        print(
            "Next: dmdesk generate --wait; dmdesk review RUN --approve-all; dmdesk train RUN --wait"
        )
        return EXIT_OK
    if cmd == "_demo-store":
        return _demo_store(config)
    if cmd in ("gui", "demo"):
        from dmdesk.ui.main_window import run_gui  # late

        smoke = getattr(args, "smoke", False) or args.top_smoke
        return run_gui(config, smoke=smoke, demo=cmd == "demo", settings_problem=settings_problem)

    if cmd in ("search", "import", "evaluate"):
        return _retrieval(cmd, args, app.start(config))

    if cmd == "_job":
        return _job(app.start(config, recover_runs=False), args)

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
            if args.follow:
                return _follow(ctx, runs.get_run(args.run_id), args.json)
            _show(runs.get_run(args.run_id), args.json)
            return EXIT_OK
        if cmd == "generate":
            if args.estimate:
                return _estimate(ctx, args.json)
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
            from dmdesk.services import activation  # late

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

            from dmdesk.services.export import export  # late

            print(export(ctx, args.run_id, Path(args.dest), args.format))
            return EXIT_OK
        if cmd == "review":
            if args.list:
                pairs = runs.list_pairs(args.run_id)
                if args.json:
                    for pair in pairs:
                        _print_json(pair.model_dump(mode="json"))
                else:
                    _print_pairs(pairs)
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
    finally:
        ctx.dispose()
    raise InvalidSettings(f"Unknown command {cmd!r}")


def _log_path() -> str:
    """Where unexpected errors are logged (set up here if the failure came before start-up)."""
    from pathlib import Path

    import platformdirs

    from dmdesk.app import log_file, setup_logging  # late

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
        import logging

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
