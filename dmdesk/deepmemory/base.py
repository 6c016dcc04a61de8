"""The interface between the training job and a Deep Memory backend.

A backend trains on (query, relevant chunk ids) pairs and returns metrics. It reports a job id as
soon as it has one (`on_job_id`, stored at once so a crash keeps it), progress as a fraction,
and checks `cancel` between steps. Failure is a :class:`TrainingError` carrying the job id and
any partial metrics, which the run keeps (Scenario 2). The factory that picks a backend by
its name is `dmdesk.deepmemory.backends`, above both backends (the base knows neither).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from dmdesk.deepmemory.evalset import EvaluationSet
from dmdesk.domain.snapshot import RunSnapshot


@dataclass(frozen=True)
class TrainingRequest:
    run_id: int
    queries: list[str]
    # deeplake's `relevance`: for each query, [(chunk_id, 1)] (deeplake documents integer 0/1).
    relevance: list[list[tuple[str, int]]]
    vector_store_path: str | None
    settings: RunSnapshot = field(default_factory=RunSnapshot)
    # The job a previous attempt of this run submitted (Proceed asks what became of it).
    previous_job_id: str | None = None
    # The store's evaluation set (real questions), measured before and after by the local
    # engine; the guard's verdict rests on it (dmdesk.deepmemory.guard).
    evaluation: EvaluationSet | None = None


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
