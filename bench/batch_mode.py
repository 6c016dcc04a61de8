"""Issue 13: Batch API mode on 20,000 chunks. The test server (its own process) answers the
batches `--delay` seconds after they are created; the client polls every second. Measured: the
client's CPU (this process: building and uploading the JSONL, polling, downloading, parsing and
writing 20,000 chunks' pairs), its peak RSS, and the time from the server having answered every
line to the run reaching `generated`.

    python bench/batch_mode.py [--chunks 20000] [--delay 20] [--max-requests 50000]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import urllib.request

from _common import ServerProcess, context, line, store_of

from dmdesk.domain.status import RunStatus
from dmdesk.jobs.runner import run_job
from dmdesk.services.runs import TrainingRunService


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--chunks", type=int, default=20_000)
    p.add_argument("--delay", type=float, default=20.0)
    p.add_argument("--max-requests", type=int, default=50_000)
    args = p.parse_args()
    store = store_of(args.chunks)
    with ServerProcess(latency_s=0.0) as srv:
        srv.configure(batch_delay_s=args.delay)
        ctx = context(
            store,
            srv.base_url,
            llm_mode="batch",
            batch_poll_interval_s=1.0,
            batch_max_requests=args.max_requests,
        )
        runs = TrainingRunService(ctx)
        cpu0 = time.process_time()
        run = runs.start_generation()
        final = run_job(runs.ctx, run.id)
        ended = time.time()
        cpu = time.process_time() - cpu0
        ctx.dispose()
        with urllib.request.urlopen(srv.base_url + "/batches", timeout=30) as r:
            batches = json.loads(r.read())["data"]
        stats = srv.stats()
    assert final.status is RunStatus.GENERATED, final.error_message
    assert final.processed_chunks == args.chunks and stats["requests"] == 0
    due = max(b["dmdesk_due_at"] for b in batches)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = args.chunks
    line(
        f"batch mode, {n:,} chunks, {len(batches)} batch(es)",
        f"CPU {cpu:.1f} s = {cpu / n * 1000:.2f} ms/chunk",
        "≤ 5 ms/chunk (P1's)",
        cpu / n * 1000 / 5,
    )
    line("batch mode, peak RSS", f"{rss_mb:.0f} MB", "≤ 500 MB (P5's)", rss_mb / 500)
    line(
        "batch mode, server done → run generated",
        f"{ended - due:.1f} s",
        "≤ poll interval + a few s",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
