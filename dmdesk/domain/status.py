"""The run state machine of ZIP-004/ZIP-005, in one place.

```
generating ──ok──▶ generated ──train──▶ training ──ok──▶ completed
    │  ▲                                   │  ▲
  error│  │proceed                       error│  │proceed
    ▼  │                                   ▼  │
generating_failed ──remove──▶ (deleted)  training_failed ──remove──▶ (deleted)
```
Every other transition raises :class:`~dmdesk.domain.errors.InvalidTransition`. Removal is not a
transition (the row disappears) and is allowed only from the two failed statuses.
"""

from __future__ import annotations

from enum import StrEnum

from dmdesk.domain.errors import InvalidTransition


class RunStatus(StrEnum):
    GENERATING = "generating"
    GENERATED = "generated"
    TRAINING = "training"
    COMPLETED = "completed"
    GENERATING_FAILED = "generating_failed"
    TRAINING_FAILED = "training_failed"


ALL_STATUSES: tuple[str, ...] = tuple(s.value for s in RunStatus)
# Revision 1 (ZIP-004) knew a single failure status.
LEGACY_STATUSES: tuple[str, ...] = ("generating", "generated", "training", "completed", "failed")

ACTIVE = frozenset({RunStatus.GENERATING, RunStatus.TRAINING})
FAILED = frozenset({RunStatus.GENERATING_FAILED, RunStatus.TRAINING_FAILED})
# FR-2: every status but completed blocks a new generation.
BLOCKING = frozenset(RunStatus) - {RunStatus.COMPLETED}

_ALLOWED: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.GENERATING: frozenset({RunStatus.GENERATED, RunStatus.GENERATING_FAILED}),
    RunStatus.GENERATED: frozenset({RunStatus.TRAINING}),
    RunStatus.TRAINING: frozenset({RunStatus.COMPLETED, RunStatus.TRAINING_FAILED}),
    RunStatus.COMPLETED: frozenset(),
    RunStatus.GENERATING_FAILED: frozenset({RunStatus.GENERATING}),
    RunStatus.TRAINING_FAILED: frozenset({RunStatus.TRAINING}),
}

# The failure status of each active phase (FR-1.2, FR-1.3) and the phase a proceed resumes.
FAILURE_OF: dict[RunStatus, RunStatus] = {
    RunStatus.GENERATING: RunStatus.GENERATING_FAILED,
    RunStatus.TRAINING: RunStatus.TRAINING_FAILED,
}
RESUMES_TO: dict[RunStatus, RunStatus] = {v: k for k, v in FAILURE_OF.items()}


def can_transition(old: RunStatus | str, new: RunStatus | str) -> bool:
    return RunStatus(new) in _ALLOWED[RunStatus(old)]


def check_transition(old: RunStatus | str, new: RunStatus | str, run_id: int | None = None) -> None:
    if not can_transition(old, new):
        raise InvalidTransition(RunStatus(old), RunStatus(new), run_id)


def phase_label(status: RunStatus | str) -> str:
    """The phase a person reads for a status (SC-1)."""
    s = RunStatus(status)
    if s in (RunStatus.GENERATING, RunStatus.GENERATING_FAILED, RunStatus.GENERATED):
        return "generation"
    return "training"


def progress_text(status: RunStatus | str, processed: int, total: int) -> str:
    """FR-7.7's Progress column, shared by the GUI and the CLI."""
    s = RunStatus(status)
    if s in (RunStatus.GENERATING, RunStatus.GENERATING_FAILED, RunStatus.TRAINING_FAILED):
        return f"{processed}/{total}"
    if s is RunStatus.TRAINING:
        return "In progress"
    return "—"
