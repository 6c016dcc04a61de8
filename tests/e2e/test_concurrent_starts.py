"""Issue 12: dmdesk processes started together on a fresh (or a ZIP-004) database. Before, the
second one often died in the migration ("table deep_memory_training_runs already exists"): 9 of
12 trials of two `dmdesk generate --wait` on a new SQLite file. Now schema upgrades are
serialised (a lock file; pg_advisory_lock) and FR-2 holds: exactly one run, the others exit 3."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from dmdesk.db import migrate
from dmdesk.testing.cli import dmdesk_env
from dmdesk.testing.llm_server import FakeLLMServer

pytestmark = pytest.mark.slow


def start_together(env: dict[str, str], n: int) -> list[subprocess.CompletedProcess[str]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "dmdesk", "generate", "--wait", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(n)
    ]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


def run_rounds(
    tmp_path: Path,
    new_url: Callable[[Path], str],
    store: Path,
    llm: FakeLLMServer,
    procs: int,
    rounds: int,
    legacy: bool = False,
) -> None:
    for i in range(rounds):
        root = tmp_path / f"round-{procs}-{i}"
        root.mkdir()
        url = new_url(root)
        if legacy:  # a ZIP-004 database with a completed run, being upgraded by the racers
            migrate.upgrade(url, "0001")
            engine = sa.create_engine(url)
            with engine.begin() as c:
                c.execute(
                    sa.text(
                        "INSERT INTO deep_memory_training_runs (status, created_at, "
                        "updated_at) VALUES ('completed', '2026-01-01', '2026-01-01')"
                    )
                )
            engine.dispose()
        env = dmdesk_env(
            root,
            vector_store_path=store,
            deep_memory_backend="local",
            llm_base_url=llm.base_url,
            llm_model="test-model",
            database_url=url,
        ) | {"HOME": str(root)}
        results = start_together(env, procs)
        codes = sorted(r.returncode for r in results)
        detail = "\n".join(f"exit {r.returncode}: {r.stderr[-600:]}" for r in results)
        assert codes == [0] + [3] * (procs - 1), detail
        for r in results:
            assert "Traceback" not in r.stderr and "already exists" not in r.stderr, detail
        engine = sa.create_engine(url)
        with engine.connect() as c:
            statuses = c.execute(
                sa.text("SELECT status FROM deep_memory_training_runs ORDER BY id")
            ).scalars()
            assert list(statuses) == (["completed"] if legacy else []) + ["generated"]
        engine.dispose()


@pytest.mark.parametrize(
    ("database", "procs", "rounds", "legacy"),
    [
        ("sqlite", 2, 20, False),
        ("sqlite", 8, 3, False),
        ("sqlite", 2, 5, True),
        ("postgresql", 2, 20, False),
        ("postgresql", 8, 3, False),
        ("postgresql", 2, 5, True),
    ],
)
def test_processes_started_together_create_exactly_one_run(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    store_factory: Callable[[int], Path],
    llm_server: FakeLLMServer,
    database: str,
    procs: int,
    rounds: int,
    legacy: bool,
) -> None:
    if database == "sqlite":
        new_url: Callable[[Path], str] = lambda root: f"sqlite:///{root / 'dmdesk.db'}"  # noqa: E731
    else:
        postgres = request.getfixturevalue("postgres")
        new_url = lambda _root: postgres.new_database()  # noqa: E731
    run_rounds(tmp_path, new_url, store_factory(5), llm_server, procs, rounds, legacy)
