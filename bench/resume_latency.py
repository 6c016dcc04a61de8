"""P2: resume latency. A failed run of 100,000 chunks with 60,000 already processed: time from
`proceed` to the first new LLM request (target < 1 s), and the first progress report must already
read 60000/100000.

    python bench/resume_latency.py [--chunks 100000] [--done 60000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import threading
import time

from _common import ServerProcess, context, line, median_of, store_of
from sqlalchemy import insert, update

from dmdesk.db.models import TrainingPair, TrainingRun, utcnow
from dmdesk.domain.models import ProgressUpdate
from dmdesk.domain.snapshot import RunSnapshot
from dmdesk.jobs.runner import run_job
from dmdesk.services.runs import TrainingRunService
from dmdesk.vectorstore.service import VectorStoreService


def one(srv: ServerProcess, chunks: int, done: int, hint: int | None) -> tuple[float, str]:
    store = store_of(chunks)
    ctx = context(store, srv.base_url, generation_concurrency=32)
    runs = TrainingRunService(ctx)
    run = runs.start_generation()
    ids = VectorStoreService(str(store)).read_ids(done)
    now = utcnow()
    with ctx.engine.begin() as c:  # 60,000 chunks already done, then a failure
        c.execute(
            insert(TrainingPair),
            [
                {
                    "training_run_id": run.id,
                    "chunk_id": cid,
                    "question": f"q {cid}?",
                    "approved": None,
                    "created_at": now,
                }
                for cid in ids
            ],
        )
        # `hint`: the resume_row recorded (the lowest row not known done). A failed or stopped
        # job records it as it ends (= done here); a running one every 2 s, so a kill -9 leaves
        # one up to 2 s of work behind; None: no hint at all (a session killed within its first
        # 2 s, a ZIP-004 run), every id below the first chunk to do is read.
        settings = (run.settings or RunSnapshot()).model_copy(update={"resume_row": hint})
        c.execute(
            update(TrainingRun).values(
                status="generating_failed",
                processed_chunks=done,
                pair_count=done,
                owner=None,
                settings=settings,
                error_message="LLM down",
            )
        )
    srv.reset()
    first: list[ProgressUpdate] = []
    cancel = threading.Event()

    def progress(u: ProgressUpdate) -> None:
        if not first:
            first.append(u)
        if u.processed > done + 50:
            cancel.set()

    t0 = time.time()
    runs.proceed(run.id)
    run_job(runs.ctx, run.id, progress, cancel)
    latency = srv.stats()["first_request_at"] - t0
    ctx.dispose()
    return latency, f"{first[0].processed}/{first[0].total}"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--chunks", type=int, default=100_000)
    p.add_argument("--done", type=int, default=60_000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    reports: list[str] = []
    with ServerProcess(latency_s=0.0) as srv:
        behind = args.done - 2 * 64  # 2 s of work at P1's 64 chunks/s
        for hint, label in (
            (args.done, "after a failure or stop"),
            (behind, "after a kill -9 (resume row 2 s behind)"),
            (None, "with no resume row (kill -9 in the first 2 s)"),
        ):

            def measure(hint: int | None = hint) -> float:
                latency, report = one(srv, args.chunks, args.done, hint)
                reports.append(report)
                return latency

            lat, values = median_of(args.repeats, measure)
            line(
                f"P2 proceed → first LLM request, {label}",
                f"{lat * 1000:.0f} ms",
                "< 1000 ms",
                1.0 / lat,
            )
            print(f"  runs: {', '.join(f'{v * 1000:.0f} ms' for v in values)}")
    line("P2 first progress report", reports[0], f"{args.done}/{args.chunks}")
    assert all(r == f"{args.done}/{args.chunks}" for r in reports)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
