"""The state machine: the allowed transitions and nothing else (DESIGN.md state machine)."""

from __future__ import annotations

import itertools

import pytest

from dmdesk.domain.errors import EXIT_REFUSED, InvalidTransition
from dmdesk.domain.status import (
    BLOCKING,
    FAILED,
    RunStatus,
    can_transition,
    check_transition,
    progress_text,
)

S = RunStatus
ALLOWED = {
    (S.GENERATING, S.GENERATED),
    (S.GENERATING, S.GENERATING_FAILED),
    (S.GENERATING_FAILED, S.GENERATING),
    (S.GENERATED, S.TRAINING),
    (S.TRAINING, S.COMPLETED),
    (S.TRAINING, S.TRAINING_FAILED),
    (S.TRAINING_FAILED, S.TRAINING),
}


def test_six_statuses_of_fr1() -> None:
    assert {s.value for s in RunStatus} == {
        "generating",
        "generated",
        "training",
        "completed",
        "generating_failed",
        "training_failed",
    }


@pytest.mark.parametrize(("old", "new"), sorted(ALLOWED))
def test_allowed_transition(old: RunStatus, new: RunStatus) -> None:
    assert can_transition(old, new)
    check_transition(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [p for p in itertools.product(RunStatus, RunStatus) if p not in ALLOWED],
)
def test_every_other_transition_raises_a_domain_error(old: RunStatus, new: RunStatus) -> None:
    with pytest.raises(InvalidTransition) as err:
        check_transition(old, new, run_id=7)
    assert err.value.exit_code == EXIT_REFUSED
    assert "#7" in err.value.message


def test_fr2_every_status_but_completed_blocks() -> None:
    assert frozenset(RunStatus) - BLOCKING == {S.COMPLETED}
    assert {S.GENERATING_FAILED, S.TRAINING_FAILED} == FAILED


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (S.GENERATING, "51/80"),
        (S.GENERATING_FAILED, "51/80"),
        (S.TRAINING, "In progress"),
        (S.TRAINING_FAILED, "51/80"),
        (S.COMPLETED, "—"),
        (S.GENERATED, "—"),
    ],
)
def test_fr7_7_progress_column_text(status: RunStatus, expected: str) -> None:
    assert progress_text(status, 51, 80) == expected
