"""Issue 12: one authority over run status. Every status write goes through
`dmdesk.services.transitions.write_run`, which validates `old → new` against the table in
`dmdesk.domain.status` and writes only if the run is still what the caller saw."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from dmdesk.db.session import session_scope
from dmdesk.domain.errors import InvalidTransition
from dmdesk.domain.status import RunStatus, can_transition
from dmdesk.services.context import ServiceContext
from dmdesk.services.runs import TrainingRunService
from dmdesk.services.transitions import write_run
from tests.helpers import insert_run

ALLOWED = {
    ("generating", "generated"),
    ("generating", "generating_failed"),
    ("generated", "training"),
    ("training", "completed"),
    ("training", "training_failed"),
    ("generating_failed", "generating"),
    ("training_failed", "training"),
}


@pytest.mark.parametrize(
    ("old", "new"), list(itertools.product(RunStatus, RunStatus)), ids=lambda s: s.value
)
def test_every_pair_of_statuses_only_the_allowed_ones_pass(
    ctx: ServiceContext, old: RunStatus, new: RunStatus
) -> None:
    run_id = insert_run(ctx, old.value)
    allowed = (old.value, new.value) in ALLOWED
    assert can_transition(old, new) is allowed
    with session_scope(ctx.sessions) as s:
        if allowed:
            assert write_run(s, run_id, expect=old, to=new)
        else:
            with pytest.raises(InvalidTransition):
                write_run(s, run_id, expect=old, to=new)
    assert TrainingRunService(ctx).get_run(run_id).status is (new if allowed else old)


def test_a_write_loses_when_the_run_is_not_what_the_caller_saw(ctx: ServiceContext) -> None:
    run_id = insert_run(ctx, "generating", owner="host:1:a")
    with session_scope(ctx.sessions) as s:
        # someone else's run, and a status that changed meanwhile: nothing is written
        assert not write_run(
            s, run_id, expect=RunStatus.GENERATING, owned_by="host:2:b", to=RunStatus.GENERATED
        )
        assert not write_run(s, run_id, expect=RunStatus.TRAINING, to=RunStatus.COMPLETED)
        assert write_run(
            s, run_id, expect=RunStatus.GENERATING, owned_by="host:1:a", to=RunStatus.GENERATED
        )
    assert TrainingRunService(ctx).get_run(run_id).status is RunStatus.GENERATED


# A run's status written outside the one writer: a `status=` keyword (an UPDATE's values, a
# TrainingRun(...) constructor), a values dict with a run status, `run.status = …`. Building
# a RunView (`status=RunStatus(run.status)`) reads, not writes.
_STATUS_VALUE = (
    r"(RunStatus\.|\w+\.value|FAILURE_OF|RESUMES_TO|[\"'](generat|train|complet)\w*[\"'])"
)
STATUS_WRITE = re.compile(
    rf"""(\bstatus=(?!=|RunStatus\()|["']status["']\s*:\s*{_STATUS_VALUE}|\brun\.status\s*=(?!=))"""
)
ALLOWED_FILES = {"dmdesk/services/transitions.py"}


def test_no_other_code_writes_a_status() -> None:
    root = Path(__file__).resolve().parents[2]
    offenders = []
    for path in sorted((root / "dmdesk").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in ALLOWED_FILES or rel.startswith("dmdesk/testing/"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if STATUS_WRITE.search(code):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert offenders == [], "status written outside dmdesk.services.transitions"
