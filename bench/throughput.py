"""P1: generation throughput at the LLM's limit, the speed-up over a sequential generator, and
the client's own CPU cost per chunk.

* 3,000 chunks, server latency 500 ms (a fast real LLM call), concurrency 32: achieved chunks/s
  against the ideal 32 / 0.5 s = 64/s (target ≥ 0.90).
* The same at concurrency 1 (a sequential generator, as LlamaIndex's QA generator is) on 60
  chunks: speed-up = rate(32) / rate(1) (target ≥ 20×).
* Client CPU per chunk at zero latency over 2,000 chunks (SDK call + validation + DB commit +
  progress), the server running in another process (target ≤ 5 ms).

    python bench/throughput.py [--repeats 3] [--chunks 3000]
"""

from __future__ import annotations

import argparse
import time

from _common import ServerProcess, context, line, median_of, store_of

from dmdesk.jobs.runner import run_job
from dmdesk.services.runs import TrainingRunService


def rate(srv: ServerProcess, chunks: int, concurrency: int) -> float:
    ctx = context(store_of(chunks), srv.base_url, generation_concurrency=concurrency)
    runs = TrainingRunService(ctx)
    run = runs.start_generation()
    t0 = time.perf_counter()
    final = run_job(runs.ctx, run.id)
    elapsed = time.perf_counter() - t0
    assert final.processed_chunks == chunks, final.error_message
    ctx.dispose()
    return chunks / elapsed


def cpu_per_chunk(srv: ServerProcess, chunks: int) -> float:
    ctx = context(store_of(chunks), srv.base_url, generation_concurrency=32)
    runs = TrainingRunService(ctx)
    run = runs.start_generation()
    c0 = time.process_time()
    final = run_job(runs.ctx, run.id)
    cpu = time.process_time() - c0
    assert final.processed_chunks == chunks
    ctx.dispose()
    return cpu / chunks * 1000


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunks", type=int, default=3000)
    args = p.parse_args()
    with ServerProcess(latency_s=0.5) as srv:
        r32, all32 = median_of(args.repeats, lambda: rate(srv, args.chunks, 32))
        line(
            "P1 throughput, 500 ms LLM, concurrency 32",
            f"{r32:.1f} chunks/s",
            "≥ 0.90 × 64/s",
            r32 / 64,
        )
        r1, _ = median_of(1, lambda: rate(srv, 60, 1))
        line("P1 sequential (concurrency 1)", f"{r1:.2f} chunks/s", "ideal 2/s", r1 / 2)
        line("P1 speed-up over sequential", f"{r32 / r1:.1f}×", "≥ 20×", (r32 / r1) / 20)
    with ServerProcess(latency_s=0.0) as srv:
        cpu, _ = median_of(args.repeats, lambda: cpu_per_chunk(srv, 2000))
        line("P1 client CPU per chunk (zero latency)", f"{cpu:.2f} ms", "≤ 5 ms", 5 / cpu)
    print(f"  runs at concurrency 32: {', '.join(f'{x:.1f}' for x in all32)} chunks/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
