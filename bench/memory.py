"""P5: peak RSS of a 100,000-chunk generation (target ≤ 500 MB): chunks are streamed from the
store in batches, never all texts at once. Runs the job in a child process and reads its
ru_maxrss.

    python bench/memory.py [--chunks 100000]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

from _common import ServerProcess, line, store_of

CHILD = """
import sys, resource
sys.path.insert(0, "bench")
from _common import context, store_of
from dmdesk.services.runs import TrainingRunService
from dmdesk.jobs.runner import run_job
ctx = context(store_of(int(sys.argv[1])), sys.argv[2], generation_concurrency=32)
runs = TrainingRunService(ctx)
final = run_job(runs.ctx, runs.start_generation().id)
assert final.processed_chunks == int(sys.argv[1]), final.error_message
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--chunks", type=int, default=100_000)
    args = p.parse_args()
    store_of(args.chunks)
    with ServerProcess(latency_s=0.0) as srv:
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(args.chunks), srv.base_url],
            capture_output=True,
            text=True,
            check=True,
        )
        secs = time.perf_counter() - t0
    peak_mb = int(out.stdout.strip().splitlines()[-1]) / 1024
    line(f"P5 peak RSS, {args.chunks} chunks", f"{peak_mb:.0f} MB", "≤ 500 MB", 500 / peak_mb)
    print(
        f"  {args.chunks / secs:.0f} chunks/s end to end at zero latency ({secs:.0f} s); "
        f"this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
