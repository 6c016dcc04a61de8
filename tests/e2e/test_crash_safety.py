"""Issue 6: kill -9 at random points, concurrent starts from two processes."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from dmdesk.testing.cli import dmdesk_env
from dmdesk.testing.crash import kill_round
from dmdesk.testing.llm_server import FakeLLMServer

SEED = int(os.environ.get("DMDESK_KILL_SEED", "20261129"))
DELAYS = [round(random.Random(SEED + i).uniform(0.6, 3.0), 2) for i in range(5)]


@pytest.mark.parametrize("delay_s", DELAYS)
def test_kill_9_at_a_random_moment_loses_and_duplicates_nothing(
    tmp_path: Path, store200: Path, llm_server: FakeLLMServer, delay_s: float
) -> None:
    llm_server.configure(latency_s=0.05)
    result = kill_round(tmp_path, store200, llm_server.base_url, delay_s, chunks=200)
    assert result.ok, result


def test_two_processes_starting_at_once_create_exactly_one_run(
    tmp_path: Path, store200: Path, llm_server: FakeLLMServer
) -> None:
    """20 races; each in a fresh database. The loser gets exit 3 and a clear message."""
    import sqlite3

    for i in range(20):
        work = tmp_path / f"race{i}"
        env = dmdesk_env(
            work,
            vector_store_path=store200,
            deep_memory_backend="local",
            llm_base_url=llm_server.base_url,
            chunk_limit=2,
        )
        # The schema first, so both racers meet at the insert, not at the migration.
        subprocess.run(
            [sys.executable, "-m", "dmdesk", "runs"], env=env, check=True, capture_output=True
        )
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "dmdesk", "generate", "--wait"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                stdin=subprocess.DEVNULL,
            )
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=120) for p in procs]
        codes = sorted(p.returncode for p in procs)
        assert codes == [0, 3], (codes, outs)
        loser = outs[[p.returncode for p in procs].index(3)][1]
        assert "a new generation can start only when every run is completed or removed" in loser
        db = sqlite3.connect(work / "data" / "dmdesk.db")
        try:
            assert db.execute("SELECT count(*) FROM deep_memory_training_runs").fetchone()[0] == 1
        finally:
            db.close()
