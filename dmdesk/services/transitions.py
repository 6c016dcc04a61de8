"""The one writer of a run's row: every status change, and every guarded write of a job.

A status changes only through :func:`write_run` with `to=`: it validates `old → new` against
the table in :mod:`dmdesk.domain.status` and performs the UPDATE conditional on the run's id,
its expected status and (when given) its owner token, returning whether it won. Two processes
acting on the same run therefore cannot both succeed, and no code outside this module assigns
`status` (tests/test_transitions.py greps for it). A new run is inserted by :func:`insert_run`.

Each change is one line in `dmdesk.log` ("run 3: generating → generating_failed: …"), so the
log tells every run's story: started, completed, failed, stopped, recovered, proceeded.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import text, update
from sqlalchemy.orm import Session

from dmdesk.db.models import TrainingRun
from dmdesk.domain.status import RunStatus, check_transition

log = logging.getLogger("dmdesk.runs")


class _AnyOwner:
    def __repr__(self) -> str:
        return "ANY_OWNER"


ANY_OWNER: Any = _AnyOwner()  # write whoever owns the run (admin actions, recovery)


def write_run(
    s: Session,
    run_id: int,
    *,
    expect: RunStatus,
    owned_by: str | None = ANY_OWNER,
    to: RunStatus | None = None,
    where: tuple[Any, ...] = (),
    **values: Any,
) -> bool:
    """UPDATE run `run_id` with `values` if it is still `expect` (and owned by `owned_by`, and
    matches `where`); with `to`, the status becomes `to` — an invalid transition raises
    InvalidTransition before anything is written. Returns whether the row was written."""
    if "status" in values:
        raise ValueError("write_run(to=…) is how a status changes")
    if to is not None:
        check_transition(expect, to, run_id)
        values["status"] = to.value
    cond = [TrainingRun.id == run_id, TrainingRun.status == expect.value, *where]
    if owned_by is not ANY_OWNER:
        cond.append(TrainingRun.owner == owned_by)
    done = bool(
        s.execute(
            update(TrainingRun)
            .where(*cond)
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
    )
    if done and to is not None:
        error = values.get("error_message")
        log.info("run %s: %s → %s%s", run_id, expect.value, to.value, f": {error}" if error else "")
    return done


RUNS_LOCK_KEY = 0x646D_7275_6E73  # pg_advisory_xact_lock key of "dmruns"


def lock_runs(s: Session) -> None:
    """Take the database's write lock for the rest of `s`'s transaction, so a check and the
    insert that depends on it see the same runs table: SQLite `BEGIN IMMEDIATE` (must be the
    transaction's first statement), PostgreSQL a transaction-level advisory lock."""
    conn = s.connection()
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": RUNS_LOCK_KEY})


def insert_run(s: Session, **values: Any) -> TrainingRun:
    """Insert a new run in `generating` (the only status a run is born with) and flush it."""
    run = TrainingRun(status=RunStatus.GENERATING.value, **values)
    s.add(run)
    s.flush()
    log.info("run %s: started generating %s chunks", run.id, values.get("total_chunks"))
    return run
