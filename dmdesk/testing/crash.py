"""Kill -9 at a random moment, restart, recover, and check that nothing was lost or duplicated.

Used by the test suite (a few kills) and by `bench/kill_test.py` (20 kills, for the README).
One round: `dmdesk generate --wait` runs against the test LLM server; after a random delay it is
killed with SIGKILL; once its heartbeat is stale a new dmdesk process sees the run
`generating_failed`; `dmdesk proceed --wait` finishes it; then every chunk must have its pairs
exactly once and the run's counters must equal the table's truth.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmdesk.testing.cli import dmdesk_env, run_dmdesk

STALE_AFTER_S = 3.0


@dataclass
class RoundResult:
    delay_s: float
    status_after_kill: str  # the status a restarted dmdesk saw ("none": killed before the insert)
    final_status: str
    chunks: int
    lost: int  # chunks of the run without pairs at the end
    duplicated: int  # chunks with more pairs than asked
    counters_ok: bool

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.counters_ok
            and self.final_status == "generated"
        )


def kill_round(
    work: Path, store: Path, llm_base_url: str, delay_s: float, chunks: int
) -> RoundResult:
    env = dmdesk_env(
        work,
        vector_store_path=store,
        deep_memory_backend="local",
        llm_base_url=llm_base_url,
        llm_max_retries=0,
        stale_after_s=STALE_AFTER_S,
        chunk_limit=chunks,
        generation_concurrency=8,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "dmdesk", "generate", "--wait"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    time.sleep(delay_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(STALE_AFTER_S + 0.5)  # its heartbeat goes stale
    runs = json.loads(run_dmdesk(env, "runs", "--json").stdout or "[]")  # start-up recovers it
    seen = runs[0]["status"] if runs else "none"
    if not runs:
        run = _json(run_dmdesk(env, "generate", "--wait", "--json"))
    elif seen == "generating_failed":
        run = _json(run_dmdesk(env, "proceed", str(runs[0]["id"]), "--wait", "--json"))
    else:
        run = runs[0]
    db = sqlite3.connect(work / "data" / "dmdesk.db")
    try:
        per_chunk = dict(
            db.execute(
                "SELECT chunk_id, count(*) FROM deep_memory_training_pairs "
                "WHERE training_run_id = ? GROUP BY chunk_id",
                (run["id"],),
            ).fetchall()
        )
        stored = db.execute(
            "SELECT processed_chunks, pair_count, total_chunks FROM deep_memory_training_runs "
            "WHERE id = ?",
            (run["id"],),
        ).fetchone()
        n_runs = db.execute("SELECT count(*) FROM deep_memory_training_runs").fetchone()[0]
    finally:
        db.close()
    counters_ok = n_runs == 1 and stored == (len(per_chunk), sum(per_chunk.values()), chunks)
    return RoundResult(
        delay_s=delay_s,
        status_after_kill=seen,
        final_status=run["status"],
        chunks=chunks,
        lost=chunks - len(per_chunk),
        duplicated=sum(1 for n in per_chunk.values() if n > 1),
        counters_ok=counters_ok,
    )


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    """A command's JSON, or an error that says what the command said instead (a flaky round
    showed only "Expecting value" once)."""
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(
            f"{' '.join(map(str, proc.args[2:]))} exited {proc.returncode} with no JSON; "
            f"stderr: {proc.stderr[-2000:]}"
        ) from None
