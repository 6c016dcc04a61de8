"""History with 1,000 runs: statements and time of `list_runs` (one query, no N+1) and of one
row's refresh (`get_run`).

    python bench/history_queries.py [--runs 1000]
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import context, line, store_of
from sqlalchemy import event, insert

from dmdesk.db.models import TrainingPair, TrainingRun, utcnow
from dmdesk.services.runs import TrainingRunService


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=1000)
    args = p.parse_args()
    ctx = context(store_of(60), "http://127.0.0.1:9/v1")
    now = utcnow()
    with ctx.engine.begin() as c:
        c.execute(
            insert(TrainingRun),
            [
                {
                    "status": "completed",
                    "total_chunks": 100,
                    "processed_chunks": 100,
                    "pair_count": 10,
                    "settings": {},
                    "metrics": {"after": {"recall@10": 0.5}},
                    "created_at": now,
                    "updated_at": now,
                }
                for _ in range(args.runs)
            ],
        )
        c.execute(
            insert(TrainingPair),
            [
                {
                    "training_run_id": r,
                    "chunk_id": f"c{i}",
                    "question": "q?",
                    "approved": i % 2 == 0,
                    "created_at": now,
                }
                for r in range(1, args.runs + 1)
                for i in range(10)
            ],
        )
    runs = TrainingRunService(ctx)
    statements: list[str] = []
    event.listen(ctx.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    runs.list_runs()
    n_list = len(statements)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        listed = runs.list_runs()
        times.append(time.perf_counter() - t)
    statements.clear()
    runs.get_run(args.runs // 2)
    n_get = len(statements)
    t_get = statistics.median(
        [
            (lambda t: (runs.get_run(args.runs // 2), time.perf_counter() - t)[1])(
                time.perf_counter()
            )
            for _ in range(20)
        ]
    )
    assert len(listed) == args.runs
    line(
        f"history: list_runs of {args.runs} runs",
        f"{n_list} statement(s)",
        "1 (no N+1)",
        1 / n_list,
    )
    line("history: list_runs time (median of 5)", f"{statistics.median(times) * 1000:.1f} ms", "—")
    line(
        "history: one row's refresh (get_run)",
        f"{n_get} statements, {t_get * 1000:.2f} ms",
        "constant",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
