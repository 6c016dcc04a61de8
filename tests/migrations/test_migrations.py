"""The schema contract and its migrations (DESIGN.md "Database"), on a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from dmdesk.db import migrate
from dmdesk.db.session import make_engine
from dmdesk.domain.errors import DatabaseError

RUNS = "deep_memory_training_runs"
PAIRS = "deep_memory_training_pairs"
T0 = "2026-01-01 00:00:00"


@pytest.fixture
def url(database_url: str) -> str:
    """Every test here runs on SQLite and on PostgreSQL."""
    return database_url


@pytest.fixture
def engine(url: str) -> Iterator[sa.Engine]:
    e = make_engine(url)  # foreign_keys=ON, as the app uses it
    yield e
    e.dispose()


def add_run(conn: sa.Connection, run_id: int, status: str, job_id: str | None = None) -> None:
    conn.execute(
        sa.text(
            f"INSERT INTO {RUNS} (id, status, created_at, updated_at, deeplake_job_id, "
            "processed_chunks, pair_count) VALUES (:i, :s, :t, :t, :j, 3, 3)"
        ),
        {"i": run_id, "s": status, "t": T0, "j": job_id},
    )


def add_pairs(conn: sa.Connection, run_id: int, n: int) -> None:
    conn.execute(
        sa.text(
            f"INSERT INTO {PAIRS} (training_run_id, chunk_id, question, created_at) "
            "VALUES (:r, :c, 'q?', :t)"
        ),
        [{"r": run_id, "c": f"c{i}", "t": T0} for i in range(n)],
    )


def statuses(engine: sa.Engine) -> dict[int, str]:
    with engine.connect() as c:
        return dict(c.execute(sa.text(f"SELECT id, status FROM {RUNS}")).all())


def pairs_of(engine: sa.Engine, run_id: int) -> int:
    with engine.connect() as c:
        return c.scalar(
            sa.text(f"SELECT count(*) FROM {PAIRS} WHERE training_run_id = :r"), {"r": run_id}
        )


def test_head_has_the_contract_tables_and_index(url: str, engine: sa.Engine) -> None:
    migrate.upgrade(url)
    insp = sa.inspect(engine)
    run_cols = {c["name"] for c in insp.get_columns(RUNS)}
    assert {
        "id",
        "status",
        "total_chunks",
        "processed_chunks",
        "pair_count",
        "error_message",
        "deeplake_job_id",
        "metrics",
        "settings",
        "created_at",
        "updated_at",
        "heartbeat_at",
    } <= run_cols
    pair_cols = {c["name"] for c in insp.get_columns(PAIRS)}
    assert {"id", "training_run_id", "chunk_id", "question", "approved", "created_at"} <= pair_cols
    (fk,) = insp.get_foreign_keys(PAIRS)
    assert fk["referred_table"] == RUNS and fk["options"].get("ondelete") == "CASCADE"
    assert any(
        ix["column_names"] == ["training_run_id", "chunk_id"] for ix in insp.get_indexes(PAIRS)
    )
    assert migrate.current_revision(engine) == migrate.head_revision()


@pytest.mark.parametrize("status", ["failed", "bogus", ""])
def test_fr1_check_refuses_an_unknown_status_in_the_database(
    url: str, engine: sa.Engine, status: str
) -> None:
    migrate.upgrade(url)
    with pytest.raises(IntegrityError), engine.begin() as c:
        add_run(c, 1, status)


@pytest.mark.parametrize(
    "status",
    ["generating", "generated", "training", "completed", "generating_failed", "training_failed"],
)
def test_fr1_check_accepts_the_six_statuses(url: str, engine: sa.Engine, status: str) -> None:
    migrate.upgrade(url)
    with engine.begin() as c:
        add_run(c, 1, status)
    assert statuses(engine) == {1: status}


@pytest.mark.parametrize(
    ("job_id", "expected"),
    [("job-42", "training_failed"), (None, "generating_failed"), ("", "generating_failed")],
)
def test_legacy_failed_becomes_phase_status_by_job_id_and_pairs_survive(
    url: str, engine: sa.Engine, job_id: str | None, expected: str
) -> None:
    migrate.upgrade(url, "0001")
    with engine.begin() as c:
        add_run(c, 1, "completed")
        add_pairs(c, 1, 4)
        add_run(c, 2, "failed", job_id)
        add_pairs(c, 2, 7)
    migrate.upgrade(url)
    assert statuses(engine) == {1: "completed", 2: expected}
    # A batch rebuild of the runs table with foreign keys on would have deleted these.
    assert pairs_of(engine, 1) == 4
    assert pairs_of(engine, 2) == 7
    with engine.connect() as c:
        assert c.scalar(sa.text(f"SELECT processed_chunks FROM {RUNS} WHERE id = 2")) == 3
    # ... and the foreign key still cascades after the rebuild.
    with engine.begin() as c:
        c.execute(sa.text(f"DELETE FROM {RUNS} WHERE id = 2"))
    assert pairs_of(engine, 2) == 0
    assert pairs_of(engine, 1) == 4


def test_downgrade_maps_both_failure_statuses_back_to_failed(url: str, engine: sa.Engine) -> None:
    migrate.upgrade(url)
    with engine.begin() as c:
        add_run(c, 1, "completed")
        add_run(c, 2, "training_failed", "job-1")
        add_pairs(c, 2, 5)
    migrate.downgrade(url, "0001")
    assert statuses(engine) == {1: "completed", 2: "failed"}
    assert pairs_of(engine, 2) == 5
    with pytest.raises(IntegrityError), engine.begin() as c:  # old CHECK is back
        add_run(c, 3, "generating_failed")


def test_upgrade_of_several_unfinished_legacy_runs_never_refuses_and_keeps_pairs(
    url: str, engine: sa.Engine
) -> None:
    """Issue 12 / spec Assumption 5: a ZIP-004 database where failed runs piled up upgrades on
    its own; each becomes a phase-specific failed run with its pairs."""
    migrate.upgrade(url, "0001")
    with engine.begin() as c:
        add_run(c, 1, "failed", "job-1")
        add_run(c, 2, "failed")
        add_run(c, 3, "failed", "job-3")
        add_run(c, 4, "completed")
        for run_id, n in ((1, 2), (2, 3), (3, 4)):
            add_pairs(c, run_id, n)
    migrate.upgrade(url)
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert statuses(engine) == {
        1: "training_failed",
        2: "generating_failed",
        3: "training_failed",
        4: "completed",
    }
    assert [pairs_of(engine, r) for r in (1, 2, 3)] == [2, 3, 4]


@pytest.mark.parametrize("first", ["generating", "training"])
@pytest.mark.parametrize("second", ["generating", "training"])
def test_database_refuses_a_second_active_run(
    url: str, engine: sa.Engine, first: str, second: str
) -> None:
    """One run works at a time (Assumption 3), whoever inserts it."""
    migrate.upgrade(url)
    with engine.begin() as c:
        add_run(c, 1, first)
    with pytest.raises(IntegrityError), engine.begin() as c:
        add_run(c, 2, second)


def test_database_holds_several_unfinished_runs_that_do_not_work(
    url: str, engine: sa.Engine
) -> None:
    """FR-2 is the service's rule: the database holds several failed (or generated) runs, as
    an upgraded ZIP-004 database does, next to one working run."""
    migrate.upgrade(url)
    with engine.begin() as c:
        add_run(c, 1, "generating_failed")
        add_run(c, 2, "training_failed")
        add_run(c, 3, "generated")
        add_run(c, 4, "generating")
        add_run(c, 5, "completed")
        add_run(c, 6, "completed")
    assert len(statuses(engine)) == 6


def _insert_new_run(c: sa.Connection, status: str) -> int:
    """A run whose id the database chooses, as the app's inserts do."""
    return c.execute(
        sa.text(
            f"INSERT INTO {RUNS} (status, created_at, updated_at) VALUES (:s, :t, :t) RETURNING id"
        ),
        {"s": status, "t": T0},
    ).scalar_one()


def test_run_ids_are_never_reused_after_a_removal(url: str, engine: sa.Engine) -> None:
    """Issue 16: removing the newest run and creating another gave the same id (and the same
    job-N.log). 0004 rebuilds the SQLite table with AUTOINCREMENT (the copied rows seed its
    sequence); PostgreSQL's sequence never reused ids."""
    migrate.upgrade(url, "0003")
    with engine.begin() as c:
        first = _insert_new_run(c, "completed")
        second = _insert_new_run(c, "generating_failed")
        add_pairs(c, second, 3)
    migrate.upgrade(url)
    assert pairs_of(engine, second) == 3  # the rebuild kept the pairs
    with engine.begin() as c:
        c.execute(sa.text(f"DELETE FROM {RUNS} WHERE id = :i"), {"i": second})
    with engine.begin() as c:
        third = _insert_new_run(c, "generating")
    assert first < second < third
    with engine.begin() as c:
        c.execute(sa.text(f"DELETE FROM {RUNS} WHERE id = :i"), {"i": third})
    with engine.begin() as c:
        assert _insert_new_run(c, "generating") > third


def test_0004_keeps_every_run_and_pair_both_ways(url: str, engine: sa.Engine) -> None:
    migrate.upgrade(url, "0003")
    with engine.begin() as c:
        add_run(c, 1, "generating_failed")
        add_run(c, 2, "training_failed", "job-2")
        add_pairs(c, 1, 4)
        add_pairs(c, 2, 5)
    migrate.upgrade(url)
    migrate.downgrade(url, "0003")
    migrate.upgrade(url)
    assert statuses(engine) == {1: "generating_failed", 2: "training_failed"}
    assert [pairs_of(engine, 1), pairs_of(engine, 2)] == [4, 5]
    with pytest.raises(IntegrityError), engine.begin() as c:  # the CHECK survived
        add_run(c, 3, "bogus")


def test_fr5_cascade_deletes_pairs_with_their_run(url: str, engine: sa.Engine) -> None:
    migrate.upgrade(url)
    with engine.begin() as c:
        add_run(c, 1, "completed")
        add_run(c, 2, "generating_failed")
        add_pairs(c, 1, 3)
        add_pairs(c, 2, 9)
        c.execute(sa.text(f"DELETE FROM {RUNS} WHERE id = 2"))
    assert pairs_of(engine, 2) == 0
    assert pairs_of(engine, 1) == 3


def test_a_database_from_a_newer_dmdesk_is_refused(url: str, engine: sa.Engine) -> None:
    migrate.upgrade(url)
    with engine.begin() as c:
        c.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(DatabaseError, match="newer dmdesk"):
        migrate.ensure_schema(engine)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "junk.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    e = make_engine(f"sqlite:///{bad}")
    try:
        with pytest.raises(DatabaseError, match="Cannot open the database"):
            migrate.ensure_schema(e)
    finally:
        e.dispose()


@pytest.mark.filterwarnings(
    # SQLite cannot reflect the expression index `one_active_run` (checked in its own tests).
    "ignore:Skipped unsupported reflection of expression-based index:sqlalchemy.exc.SAWarning",
    "ignore:autogenerate skipping metadata-specified expression-based index:UserWarning",
)
def test_models_match_the_migrations(url: str, engine: sa.Engine) -> None:
    """Alembic's autogenerate finds nothing to add: the ORM and the migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from dmdesk.db.models import Base

    migrate.upgrade(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    # SQLite does not reflect expression indexes; compare what both dialects can see.
    diff = [d for d in diff if not (isinstance(d, tuple) and "one_active_run" in str(d))]
    assert diff == []


def test_0003_adds_pair_flags_and_keeps_every_pair_both_ways(url: str, engine: sa.Engine) -> None:
    migrate.upgrade(url, "0002")
    with engine.begin() as c:
        add_run(c, 1, "generated")
        add_pairs(c, 1, 4)
    migrate.upgrade(url)
    with engine.begin() as c:
        assert c.scalar(sa.text(f"SELECT count(*) FROM {PAIRS} WHERE flags IS NULL")) == 4
        c.execute(sa.text(f"UPDATE {PAIRS} SET flags = 'generic' WHERE chunk_id = 'c0'"))
    migrate.downgrade(url, "0002")
    assert pairs_of(engine, 1) == 4
    with engine.connect() as c:
        columns = {col["name"] for col in sa.inspect(c).get_columns(PAIRS)}
    assert "flags" not in columns


def test_alembic_from_the_command_line_commits(tmp_path: Path) -> None:
    """Issue 12: `alembic upgrade 0001` created the tables but left alembic_version empty (the
    engine path never committed), so the next dmdesk start failed with 'table … already
    exists'. Now it records its revision, and dmdesk upgrades from there."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    env = {**os.environ, "DMDESK_DATABASE_URL": url}
    proc = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(root / "alembic.ini"), "upgrade", "0001"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    engine = make_engine(url)
    try:
        assert migrate.current_revision(engine) == "0001"
        migrate.ensure_schema(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()
