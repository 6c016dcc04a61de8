"""The interface between the training job and a Deep Memory backend.

A backend trains on (query, relevant chunk ids) pairs and returns metrics. It reports a job id as
soon as it has one (`on_job_id`, stored at once so a crash keeps it), progress as a fraction,
and checks `cancel` between steps. Failure is a :class:`TrainingError` carrying the job id and
any partial metrics, which the run keeps (Scenario 2).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from dmdesk.domain.errors import InvalidSettings, TrainingError

if TYPE_CHECKING:
    from dmdesk.config import DmdeskConfig


@dataclass(frozen=True)
class TrainingRequest:
    run_id: int
    queries: list[str]
    # deeplake's `relevance`: for each query, [(chunk_id, score)].
    relevance: list[list[tuple[str, float]]]
    vector_store_path: str | None
    settings: dict[str, Any] = field(default_factory=dict)


ProgressFn = Callable[[float, str], None]


class TrainingBackend(Protocol):
    name: str

    def train(
        self,
        request: TrainingRequest,
        *,
        on_job_id: Callable[[str], None],
        progress: ProgressFn,
        cancel: threading.Event,
    ) -> dict[str, Any]: ...


class UnavailableBackend:
    """Stands in for a backend this build cannot run; fails the run with a clear message."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self._reason = reason

    def train(self, request: TrainingRequest, **_: Any) -> dict[str, Any]:
        raise TrainingError(self._reason)


def make_backend(name: str, config: DmdeskConfig) -> TrainingBackend:
    if name == "deeplake":
        return UnavailableBackend(
            name,
            "DeepLake Cloud training is not available in this version of dmdesk. Use "
            "DMDESK_DEEP_MEMORY_BACKEND=local, then Proceed.",
        )
    if name == "local":
        return UnavailableBackend(
            name,
            "The local Deep Memory engine is not available in this version of dmdesk.",
        )
    raise InvalidSettings(f"Unknown Deep Memory backend {name!r}: use 'deeplake' or 'local'.")
