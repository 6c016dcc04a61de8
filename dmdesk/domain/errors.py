"""Domain errors. Each carries the CLI exit code of DESIGN.md's contract and a message a person can
act on; the GUI shows the same message in a dialog. No message ever contains a secret."""

from __future__ import annotations

from typing import Any, ClassVar

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_NOT_FOUND = 4


class DmdeskError(Exception):
    """Base of every error a user may see."""

    exit_code: ClassVar[int] = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidSettings(DmdeskError):
    """A setting, a path or an argument is wrong; nothing was changed."""

    exit_code = EXIT_USAGE


class RuleViolation(DmdeskError):
    """A rule of the spec refuses the request (blocked generation, wrong status...)."""

    exit_code = EXIT_REFUSED


class InvalidTransition(RuleViolation):
    """`old` and `new` are statuses (dmdesk.domain.status.RunStatus, a StrEnum, or their
    values): typed as `str` so the errors depend on nothing and status may import them."""

    def __init__(self, old: str, new: str, run_id: int | None = None) -> None:
        who = f"Run #{run_id}" if run_id is not None else "The run"
        super().__init__(f"{who} is {old}; it cannot become {new}.")
        self.old, self.new, self.run_id = old, new, run_id


class GenerationBlocked(RuleViolation):
    """FR-2: a non-completed run exists. Carries the facts (run id, status, approved pairs);
    `message` phrases them for the command line, the window phrases them with its buttons
    (dmdesk.ui.workflow_panel.blocked_text)."""

    def __init__(self, run_id: int, status: str, approved_count: int | None = None) -> None:
        if status in ("generating_failed", "training_failed"):
            what = (
                f"proceed with it (dmdesk proceed {run_id}) or remove it "
                f"(dmdesk remove {run_id} --yes)"
            )
        elif status == "generated" and approved_count == 0:
            what = (
                f"approve some of its pairs (dmdesk review {run_id} …) and train it, or delete "
                f"it (dmdesk remove {run_id} --yes)"
            )
        elif status == "generated":
            what = f"review and train it (dmdesk train {run_id})"
        else:
            what = "wait for it to finish"
        super().__init__(
            f"Run #{run_id} is {status}: a new generation can start only when every run is "
            f"completed or removed. Next step: {what}."
        )
        self.run_id, self.status, self.approved_count = run_id, status, approved_count


class RunNotFound(DmdeskError):
    exit_code = EXIT_NOT_FOUND

    def __init__(self, run_id: int) -> None:
        super().__init__(f"There is no run #{run_id}. `dmdesk runs` lists the runs.")
        self.run_id = run_id


class VectorStoreError(InvalidSettings):
    """The configured vector store cannot be opened or read."""


class DatabaseError(InvalidSettings):
    """The database cannot be opened, is corrupt or is newer than this dmdesk."""


class LLMError(DmdeskError):
    """The LLM failed in a way retries did not fix."""


class TrainingError(DmdeskError):
    """A Deep Memory backend failed. Carries what should survive for diagnostics."""

    def __init__(
        self,
        message: str,
        *,
        job_id: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.metrics = metrics


class NotEnoughMemory(DmdeskError):
    """A job measured, before it started, that this machine cannot hold what it needs."""


STOPPED_BY_ADMIN = "Stopped by the administrator"


class Cancelled(DmdeskError):
    """The administrator stopped the run."""

    def __init__(self, message: str = f"{STOPPED_BY_ADMIN}. Proceed resumes it.") -> None:
        super().__init__(message)
