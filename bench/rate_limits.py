"""Issue 13: generation at an account's real limits. The test server allows 600 requests/min
(OpenAI's token bucket: a full minute of burst) and answers in 500 ms; the run's concurrency
ceiling is 64, far above what the allowance sustains. Measured: the achieved request rate once
the burst is spent (steady state) against the allowance (target ≥ 0.90), and the share of
requests answered 429 (target ≤ 5 %); with the rate-limit headers, and with 429s alone (vLLM,
Ollama, llama.cpp behind a proxy).

    python bench/rate_limits.py [--chunks 3000] [--rpm 600] [--tpm 60000]

The third row makes tokens the binding limit: 60,000 tokens/min at ~200 tokens a call (prompt
and completion) allows ~300 calls/min, under the 600 requests/min.

Before (no pacer): the run failed after 3.9 s with 22 of 600 chunks done, 93 % of its
requests answered 429.
"""

from __future__ import annotations

import argparse
import time

from _common import ServerProcess, context, line, store_of

from dmdesk.jobs.runner import run_job
from dmdesk.services.runs import TrainingRunService


def one(
    srv: ServerProcess, chunks: int, rpm: int, headers: bool, tpm: int | None = None
) -> tuple[float, str]:
    """One run; the ratio is the achieved rate of the binding limit (requests, or tokens when
    `tpm` is given) over its allowance, once the bucket's burst is spent."""
    srv.reset()
    srv.configure(rpm_limit=rpm, tpm_limit=tpm, rate_headers=headers, rate_burst=1.0)
    ctx = context(store_of(chunks), srv.base_url, generation_concurrency=64)
    runs = TrainingRunService(ctx)
    done: list[tuple[float, int]] = []
    run = runs.start_generation()
    final = run_job(runs.ctx, run.id, lambda u: done.append((time.perf_counter(), u.processed)))
    ctx.dispose()
    stats = srv.stats()
    assert final.processed_chunks == chunks, final.error_message
    per_call = (stats["prompt_tokens"] + stats["completion_tokens"]) / max(1, stats["successes"])
    allowance = rpm if tpm is None else min(rpm, tpm / per_call)  # calls a minute
    # Steady state: from the moment the bucket's burst (one minute's allowance) is spent.
    start = next((t for t, n in done if n >= allowance), done[0][0])
    end_t, end_n = done[-1]
    start_n = next((n for t, n in done if t >= start), 0)
    steady = (end_n - start_n) / max(1e-9, end_t - start) * 60.0
    # The server counts answered requests in "requests" and refused ones in "rate_limited".
    refused = stats["rate_limited"] / max(1, stats["requests"] + stats["rate_limited"])
    if tpm is None:
        return steady / rpm, f"{steady:.0f}/min, 429s {refused:.1%}"
    tokens = steady * per_call
    return tokens / tpm, f"{tokens:,.0f} tok/min ({steady:.0f}/min), 429s {refused:.1%}"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--chunks", type=int, default=3000)
    p.add_argument("--rpm", type=int, default=600)
    p.add_argument(
        "--tpm", type=int, default=60_000, help="the tokens-per-minute row's limit (binding)"
    )
    args = p.parse_args()
    with ServerProcess(latency_s=0.5) as srv:
        for headers in (True, False):
            ratio, text = one(srv, args.chunks, args.rpm, headers)
            what = "with headers" if headers else "429s only"
            line(f"rate limits {args.rpm}/min, {what}", text, "≥ 0.90, 429s ≤ 5 %", ratio)
        ratio, text = one(srv, args.chunks, args.rpm, True, tpm=args.tpm)
        line(f"rate limits {args.tpm:,} tokens/min binding", text, "≥ 0.90, 429s ≤ 5 %", ratio)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
