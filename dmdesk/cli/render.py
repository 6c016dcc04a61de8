"""What the commands print: runs, a run, pairs, JSON, and the progress of a job or an import
on stderr (a tqdm bar on a terminal, plain lines in a log)."""

from __future__ import annotations

import json
import shutil
import sys
import time
from typing import Any

from dmdesk.deepmemory.guard import verdict_lines
from dmdesk.domain.models import ProgressUpdate, RunView
from dmdesk.domain.snapshot import open_batches
from dmdesk.domain.status import FAILED, RunStatus


def print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, default=str))


def _fmt_time(run: RunView) -> str:
    return run.created_at.strftime("%Y-%m-%d %H:%M")


def print_runs(runs: list[RunView]) -> None:
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


def print_run(run: RunView) -> None:
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


def show(run: RunView, as_json: bool) -> None:
    if as_json:
        print_json(run.to_json())
    else:
        print_run(run)


def _verdict(approved: bool | None, flags: str | None) -> str:
    verdict = {True: "approved", False: "rejected", None: "to review"}[approved]
    return verdict + (" (flagged)" if flags else "")


def print_pairs(pairs: list[Any]) -> None:
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


class ImportProgress:
    """`dmdesk import`'s own progress on stderr: "embedding 1,000 documents: 256/1,000", a line
    at most every `interval` seconds and the last one, then "writing 1,000 documents"."""

    def __init__(self, interval: float = 2.0) -> None:
        self._interval, self._last = interval, 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:

        if stage == "writing":
            print(f"writing {total:,} documents to the store", file=sys.stderr, flush=True)
            return
        now = time.monotonic()
        if done == total or done == 0 or now - self._last >= self._interval:
            self._last = now
            print(f"embedding {total:,} documents: {done:,}/{total:,}", file=sys.stderr, flush=True)


class Bar:
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
        from tqdm import tqdm  # late: only on a terminal

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
