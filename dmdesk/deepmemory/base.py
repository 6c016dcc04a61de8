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

from dmdesk.deepmemory.evalset import EvaluationSet
from dmdesk.domain.errors import InvalidSettings

if TYPE_CHECKING:
    from dmdesk.config import DmdeskConfig


@dataclass(frozen=True)
class TrainingRequest:
    run_id: int
    queries: list[str]
    # deeplake's `relevance`: for each query, [(chunk_id, 1)] (deeplake documents integer 0/1).
    relevance: list[list[tuple[str, int]]]
    vector_store_path: str | None
    settings: dict[str, Any] = field(default_factory=dict)
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


def make_backend(name: str, config: DmdeskConfig) -> TrainingBackend:
    from dmdesk import secrets
    from dmdesk.embeddings import make_embedding
    from dmdesk.vectorstore.service import open_store

    def embedding() -> Any:
        return make_embedding(config.embedding, base_url=config.llm_base_url)

    if name == "deeplake":
        from dmdesk.deepmemory.cloud import DeepLakeCloudBackend

        return DeepLakeCloudBackend(
            lambda: secrets.get_secret(secrets.ACTIVELOOP_TOKEN),
            embedding,
            poll_interval_s=config.cloud_poll_interval_s,
            patience_s=config.cloud_patience_s,
            deadline_s=config.cloud_deadline_s,
        )
    if name == "local":
        from dmdesk.deepmemory.local import LocalEngineBackend

        return LocalEngineBackend(config.data_dir, embedding, open_store)
    raise InvalidSettings(f"Unknown Deep Memory backend {name!r}: use 'deeplake' or 'local'.")
