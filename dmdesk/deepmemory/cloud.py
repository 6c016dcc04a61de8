"""DeepLake Cloud's managed Deep Memory (deeplake 3.9 `VectorStore.deep_memory`).

* Opens `VectorStore(path, token, runtime={"tensor_db": True}, embedding_function=...)`.
* `deep_memory.train(queries, relevance, embedding_function)` on 80 % of the approved pairs
  (every 5th is held out, deterministically, so Proceed re-submits exactly the same data); the
  job id is handed to `on_job_id` before anything else, so it survives any crash.
* Polls the job as JSON through the deeplake client — `deep_memory.status()` only prints a table
  and returns None (DESIGN.md "Known facts") — every `poll_interval_s`, reporting progress.
* On completion, `deep_memory.evaluate(...)` on the held-out pairs gives recall@k with and without
  Deep Memory, stored as the run's metrics.
* Every failure (no access, auth, network, job failed) raises TrainingError with a readable
  message and the job id; the last progress seen is kept as partial metrics.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from dmdesk.deepmemory.base import ProgressFn, TrainingRequest
from dmdesk.deepmemory.metrics import DEFAULT_KS, holdout_split
from dmdesk.domain.errors import Cancelled, TrainingError
from dmdesk.embeddings import EmbeddingFunction

DONE_STATES = {"completed", "succeeded", "success"}
FAILED_STATES = {"failed", "error", "cancelled", "canceled"}
MAX_POLL_ERRORS = 5


def open_cloud_store(path: str, token: str, embedding: EmbeddingFunction) -> Any:
    from dmdesk.vectorstore._deeplake import import_deeplake

    import_deeplake()
    from deeplake.core.vectorstore import VectorStore

    return VectorStore(
        path=path,
        token=token,
        runtime={"tensor_db": True},
        embedding_function=embedding,
        verbose=False,
    )


def _explain(exc: Exception, path: str) -> str:
    name = type(exc).__name__
    if name == "DeepMemoryAccessError":
        return (
            f"Your Activeloop organisation has no access to Deep Memory for {path}. Ask "
            "Activeloop to enable Deep Memory, then Proceed."
        )
    if name in ("InvalidTokenException", "AuthorizationException", "UserNotLoggedInException"):
        return "DeepLake refused the Activeloop token: set a valid ACTIVELOOP_TOKEN, then Proceed."
    if name in ("ConnectionError", "Timeout", "ReadTimeout", "ConnectTimeout"):
        return "Could not reach DeepLake Cloud (network). Check the connection, then Proceed."
    return f"DeepLake Cloud failed ({name}: {str(exc)[:300]}). Proceed to retry."


class DeepLakeCloudBackend:
    name = "deeplake"

    def __init__(
        self,
        token_provider: Callable[[], str | None],
        embedding_factory: Callable[[], EmbeddingFunction],
        open_store: Callable[[str, str, EmbeddingFunction], Any] = open_cloud_store,
        poll_interval_s: float = 15.0,
    ) -> None:
        self._token = token_provider
        self._embedding_factory = embedding_factory
        self._open = open_store
        self.poll_interval_s = poll_interval_s

    def train(
        self,
        request: TrainingRequest,
        *,
        on_job_id: Callable[[str], None],
        progress: ProgressFn,
        cancel: threading.Event,
    ) -> dict[str, Any]:
        path = request.vector_store_path or ""
        store, embedding = self._open_store(path)
        train_idx, _ = holdout_split(len(request.queries))
        queries = [request.queries[i] for i in train_idx]
        relevance = [list(request.relevance[i]) for i in train_idx]
        progress(0.0, f"Submitting {len(queries)} pairs to DeepLake Cloud")
        try:
            job_id = store.deep_memory.train(
                queries=queries, relevance=relevance, embedding_function=embedding
            )
        except Exception as exc:
            raise TrainingError(_explain(exc, path)) from None
        job_id = str(job_id)
        on_job_id(job_id)
        return self._complete(store, path, job_id, request, embedding, progress, cancel)

    def attach(
        self,
        request: TrainingRequest,
        *,
        job_id: str,
        progress: ProgressFn,
        cancel: threading.Event,
    ) -> dict[str, Any]:
        """Follow a job submitted by a process that died (re-attach), then evaluate."""
        path = request.vector_store_path or ""
        store, embedding = self._open_store(path, job_id)
        return self._complete(store, path, job_id, request, embedding, progress, cancel)

    def _open_store(self, path: str, job_id: str | None = None) -> tuple[Any, EmbeddingFunction]:
        token = self._token()
        if not token:
            raise TrainingError(
                "DeepLake Cloud training needs an Activeloop token: set ACTIVELOOP_TOKEN or save "
                "it in the Settings card, then Proceed.",
                job_id=job_id,
            )
        embedding = self._embedding_factory()
        try:
            return self._open(path, token, embedding), embedding
        except Exception as exc:
            raise TrainingError(_explain(exc, path), job_id=job_id) from None

    def _complete(
        self,
        store: Any,
        path: str,
        job_id: str,
        request: TrainingRequest,
        embedding: EmbeddingFunction,
        progress: ProgressFn,
        cancel: threading.Event,
    ) -> dict[str, Any]:
        train_idx, held_idx = holdout_split(len(request.queries))
        last = self._follow(store, job_id, progress, cancel)
        progress(0.97, "Evaluating on the held-out pairs")
        try:
            evaluation = store.deep_memory.evaluate(
                relevance=[list(request.relevance[i]) for i in held_idx],
                queries=[request.queries[i] for i in held_idx],
                embedding_function=embedding,
                top_k=list(DEFAULT_KS),
            )
        except Exception as exc:
            raise TrainingError(
                f"Training finished but the evaluation failed: {_explain(exc, path)}",
                job_id=job_id,
                metrics={"job": last},
            ) from None
        return {
            "backend": "deeplake",
            "job_id": job_id,
            "before": dict(evaluation.get("without model", {})),
            "after": dict(evaluation.get("with model", {})),
            "train_pairs": len(train_idx),
            "heldout_pairs": len(held_idx),
            "evaluated_on": "training pairs" if held_idx == train_idx else "held-out pairs",
            "job": last,
        }

    def job_status(self, store: Any, job_id: str) -> dict[str, Any]:
        response = store.deep_memory.client.request(
            "GET", f"/api/deepmemory/v1/jobs/{job_id}/status"
        )
        data = response.json()
        return data if isinstance(data, dict) else {}

    def _follow(
        self, store: Any, job_id: str, progress: ProgressFn, cancel: threading.Event
    ) -> dict[str, Any]:
        errors = 0
        started = time.monotonic()
        last: dict[str, Any] = {}
        while True:
            try:
                status = self.job_status(store, job_id)
                errors = 0
            except Exception as exc:
                errors += 1
                if errors >= MAX_POLL_ERRORS:
                    raise TrainingError(
                        f"Lost contact with DeepLake while following job {job_id}: "
                        f"{_explain(exc, '')}",
                        job_id=job_id,
                        metrics={"job": last} if last else None,
                    ) from None
                status = {}
            if status:
                last = {"status": status.get("status"), "progress": status.get("progress")}
            state = str(status.get("status", "")).lower()
            info = status.get("progress") or {}
            if state in DONE_STATES:
                return last
            if state in FAILED_STATES:
                reason = info.get("error") if isinstance(info, dict) else None
                raise TrainingError(
                    f"DeepLake reports the training job {job_id} {state}"
                    + (f": {reason}" if reason else "")
                    + ". Proceed re-submits the same pairs.",
                    job_id=job_id,
                    metrics={"job": last},
                )
            progress(self._fraction(info, time.monotonic() - started), self._describe(state, info))
            if cancel.wait(self.poll_interval_s):
                # If the cancel call fails the run still ends stopped; the job id is kept.
                with contextlib.suppress(Exception):
                    store.deep_memory.cancel(job_id)
                raise Cancelled()

    @staticmethod
    def _fraction(info: Any, elapsed: float) -> float:
        eta = info.get("eta") if isinstance(info, dict) else None
        if isinstance(eta, int | float) and eta >= 0:
            return min(0.95, elapsed / (elapsed + eta + 1e-9))
        return 0.1

    @staticmethod
    def _describe(state: str, info: Any) -> str:
        parts = [state or "waiting"]
        if isinstance(info, dict):
            if info.get("eta") is not None:
                parts.append(f"eta {info['eta']} s")
            if info.get("best_recall@10") is not None:
                parts.append(f"best recall@10 {info['best_recall@10']}")
        return ", ".join(parts)
