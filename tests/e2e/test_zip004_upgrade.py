"""Issue 12 / spec Assumption 5: a ZIP-004 database where failed runs piled up — exactly the
database ZIP-005 exists for — upgrades on first start, and the admin resolves its runs one by
one with Proceed or Delete; Generate stays blocked (naming the oldest unfinished run) until none
is left. Before, dmdesk refused to start and asked the admin to type SQL.

The legacy runs have no settings snapshot (ZIP-004 kept none): Proceed takes what they lack from
the current settings and the store as it is now."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from dmdesk.db import migrate
from dmdesk.domain.errors import GenerationBlocked
from dmdesk.domain.status import RunStatus
from dmdesk.jobs.runner import run_job
from dmdesk.services.runs import TrainingRunService
from dmdesk.testing.cli import dmdesk_env, run_dmdesk
from dmdesk.testing.llm_server import FakeLLMServer
from tests.conftest import chunk_ids

CHUNKS = 20
T0 = "2026-01-01 00:00:00"


def zip004_database(url: str) -> None:
    """Revision 0001 with three `failed` runs: #1 and #3 reached DeepLake (a job id), #2 did
    not; #1 and #3 have approved pairs, #2 pairs for half of the chunks."""
    migrate.upgrade(url, "0001")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as c:
            for job_id, n in (("job-1", CHUNKS), (None, CHUNKS // 2), ("job-3", 8)):
                c.execute(
                    sa.text(
                        "INSERT INTO deep_memory_training_runs (status, created_at, updated_at, "
                        "deeplake_job_id, total_chunks, processed_chunks, pair_count, "
                        "error_message) VALUES ('failed', :t, :t, :j, :n, :n, :n, 'it failed')"
                    ),
                    {"t": T0, "j": job_id, "n": n},
                )
            rows = []
            for run_id, approved, n in ((1, True, CHUNKS), (2, None, CHUNKS // 2), (3, True, 8)):
                rows += [
                    {"r": run_id, "c": cid, "q": f"What does {cid} say?", "a": approved, "t": T0}
                    for cid in chunk_ids(CHUNKS)[:n]
                ]
            c.execute(
                sa.text(
                    "INSERT INTO deep_memory_training_pairs (training_run_id, chunk_id, "
                    "question, approved, created_at) VALUES (:r, :c, :q, :a, :t)"
                ),
                rows,
            )
    finally:
        engine.dispose()


def test_a_zip004_database_upgrades_and_its_runs_are_resolved_one_by_one(
    database_url: str, store_factory: Callable[[int], Path], make_ctx
) -> None:
    """Service level, on SQLite and on PostgreSQL."""
    zip004_database(database_url)
    ctx = make_ctx(vector_store_path=store_factory(CHUNKS), database_url=database_url)
    runs = TrainingRunService(ctx)
    assert [(r.id, r.status, r.pair_count) for r in reversed(runs.list_runs())] == [
        (1, RunStatus.TRAINING_FAILED, CHUNKS),
        (2, RunStatus.GENERATING_FAILED, CHUNKS // 2),
        (3, RunStatus.TRAINING_FAILED, 8),
    ]
    for expected_blocker, resolve in (
        (1, lambda: run_job(runs.ctx, runs.proceed(1).id)),
        (2, lambda: run_job(runs.ctx, runs.proceed(2).id)),
        (2, lambda: runs.remove(2)),  # generated, unreviewed: no approved pair → deletable
        (3, lambda: runs.remove(3)),
    ):
        with pytest.raises(GenerationBlocked) as err:
            runs.start_generation()
        assert err.value.run_id == expected_blocker
        resolve()
    assert runs.get_run(1).status is RunStatus.COMPLETED
    assert runs.start_generation().status is RunStatus.GENERATING


def test_the_window_opens_an_upgraded_zip004_database(
    qtbot, dmdesk_window, dmdesk_config, dmdesk_context, store_factory
) -> None:
    """The GUI, on a real ZIP-004 file: three failed rows, each with Proceed and Delete;
    Generate enabled only once every run is completed or deleted."""
    store = store_factory(CHUNKS)
    config = dmdesk_config(vector_store_path=store)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    zip004_database(config.effective_database_url)
    win = dmdesk_window(ctx=dmdesk_context(vector_store_path=store))
    for run_id in (1, 2, 3):
        actions = win.expand_row(run_id)
        assert actions.proceed_button is not None and actions.remove_button is not None
    generate = win.widget("generateButton")
    assert not generate.isEnabled()
    assert "Run #1" in win.widget("generateBlockedLabel").text()

    win.press_row_button(3, "deleteButton")
    win.answer("confirmRemoveBox", "Yes")
    win.press_row_button(1, "proceedButton")
    win.wait_for_status(1, "completed")
    assert not generate.isEnabled() and "Run #2" in win.widget("generateBlockedLabel").text()
    win.press_row_button(2, "deleteButton")
    win.answer("confirmRemoveBox", "Yes")
    qtbot.waitUntil(generate.isEnabled, timeout=5000)


def test_the_command_line_opens_an_upgraded_zip004_database(
    tmp_path: Path, store_factory: Callable[[int], Path], llm_server: FakeLLMServer
) -> None:
    env = dmdesk_env(
        tmp_path,
        vector_store_path=store_factory(CHUNKS),
        deep_memory_backend="local",
        llm_base_url=llm_server.base_url,
        llm_model="test-model",
    ) | {"HOME": str(tmp_path)}
    (tmp_path / "data").mkdir()
    zip004_database(f"sqlite:///{tmp_path / 'data' / 'dmdesk.db'}")
    listed = run_dmdesk(env, "runs", "--json", timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert [r["status"] for r in json.loads(listed.stdout)] == [
        "training_failed",
        "generating_failed",
        "training_failed",
    ]
    blocked = run_dmdesk(env, "generate", timeout=120)
    assert blocked.returncode == 3 and "Run #1 is training_failed" in blocked.stderr
    proceeded = run_dmdesk(env, "proceed", "2", "--wait", "--json", timeout=120)
    assert proceeded.returncode == 0, proceeded.stderr
    done = json.loads(proceeded.stdout)
    assert done["status"] == "generated" and done["processed_chunks"] == CHUNKS
    assert done["pair_count"] == CHUNKS  # the legacy pairs kept, the rest generated once
