"""DeepLake Cloud's managed Deep Memory, through deeplake 3.9's own client code.

* Opens `VectorStore(path, token, runtime={"tensor_db": True}, embedding_function=...)`; the
  embedding goes in as :class:`~dmdesk.embeddings.DeepLakeEmbedding`, the only form deeplake's
  `embedder.py` accepts for train, search and evaluate alike.
* `deep_memory.train(queries, relevance)` on the approved pairs of the train and validation
  splits (dmdesk.deepmemory.guard.split_pairs: by chunk and question, deterministic, so a
  re-submission sends exactly the same data), relevance as integer 1 as deeplake documents it.
  The job id is handed to `on_job_id` at once, so it survives any crash.
* Follows the job by polling its JSON status through deeplake's client (`deep_memory.status()`
  only prints a table). Every network call is bounded: deeplake's own retry loop is capped by
  :func:`~dmdesk.vectorstore._deeplake.prepare_cloud`, each poll runs where Stop can leave it
  within a poll step, and an outage ends the run only after `cloud_patience_s` ("unreachable
  since …"). A state dmdesk does not know is tolerated as long, and any job at most
  `cloud_deadline_s`.
* Stop cancels the job; when DeepLake refuses (a job that is no longer pending cannot be
  cancelled) or cannot be reached, the run says the job is still training remotely.
* Proceed (`resume`) asks DeepLake first: a job still pending or training is followed again
  (nothing re-submitted, `<store>_queries` untouched), a completed job is only evaluated, a
  failed, cancelled or deleted job is re-submitted.
* Evaluation runs dmdesk's own held-out pairs through `VectorStore.search` without and with
  `deep_memory=True` — the very search dmdesk's users get — and reports recall@k and MRR@10
  (with per-query reciprocal ranks for the activation guard).
* Each failure is named for what it is (bad token, no permission, no Deep Memory access, job or
  store not found, service error, unreachable) with the next step.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

from dmdesk.deepmemory.base import ProgressFn, TrainingRequest
from dmdesk.deepmemory.guard import Split, split_pairs
from dmdesk.deepmemory.metrics import DEFAULT_KS, metrics_from_ranks
from dmdesk.domain.errors import Cancelled, TrainingError
from dmdesk.embeddings import DeepLakeEmbedding, EmbeddingFunction
from dmdesk.vectorstore._deeplake import CloudUnreachable, prepare_cloud

DONE_STATES = {"completed", "succeeded", "success", "finished"}
FAILED_STATES = {"failed", "error"}
CANCELLED_STATES = {"cancelled", "canceled"}
RUNNING_STATES = {"pending", "queued", "starting", "preparing", "training", "running"}
EVAL_K = max(DEFAULT_KS)
STATUS_TIMEOUT_S = 20
CANCEL_BUDGET_S = 1.5

_AUTH = {"AuthenticationException", "InvalidTokenException", "UserNotLoggedInException"}
_PERMISSION = {"AuthorizationException", "TokenPermissionError"}
_SERVICE = {
    "ServerException",
    "BadGatewayException",
    "GatewayTimeoutException",
    "OverLimitException",
    "LockedException",
    "UnexpectedStatusCodeException",
}
_UNREACHABLE = {"CloudUnreachable", "ConnectionError", "Timeout", "ReadTimeout", "ConnectTimeout"}


def open_cloud_store(path: str, token: str, embedding: EmbeddingFunction) -> Any:

    prepare_cloud()
    from deeplake.core.vectorstore import VectorStore

    with _quiet():
        return VectorStore(
            path=path,
            token=token,
            runtime={"tensor_db": True},
            embedding_function=DeepLakeEmbedding(embedding),
            verbose=False,
        )


@contextlib.contextmanager
def _quiet() -> Any:
    """deeplake prints tables, notices and tqdm bars; they would garble the CLI's progress."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def is_transient(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name in _SERVICE or name in _UNREACHABLE


def explain(exc: BaseException, path: str, job_id: str | None = None) -> str:
    """What went wrong, in words, with the next step. Never includes the token."""
    name = type(exc).__name__
    if name == "DeepMemoryAccessError":
        return (
            f"Your Activeloop organisation has no access to Deep Memory for {path}. Ask "
            "Activeloop to enable Deep Memory, then Proceed."
        )
    if name in _AUTH:
        return (
            "DeepLake Cloud refused the Activeloop token (401): set a valid ACTIVELOOP_TOKEN "
            "or save one in Settings, then Proceed."
        )
    if name in _PERMISSION:
        return (
            f"The Activeloop token has no permission for {path} (403): use a token of a member "
            "of its organisation with write access, then Proceed."
        )
    if name == "ResourceNotFoundException":
        if job_id:
            return (
                f"DeepLake Cloud has no training job {job_id} any more (404). Proceed submits "
                "the approved pairs again."
            )
        return f"DeepLake Cloud cannot find {path} (404): check the vector store path."
    if name in _SERVICE:
        return (
            f"DeepLake Cloud answered with a service error ({name}). It is usually "
            "temporary: Proceed later."
        )
    if name in _UNREACHABLE:
        return "DeepLake Cloud cannot be reached (network). Check the connection, then Proceed."
    return f"DeepLake Cloud failed ({name}: {str(exc)[:300]}). Proceed to retry."


class _Interrupted(Exception):
    """Stop was pressed while a network call was under way."""


def _call(fn: Callable[[], Any], cancel: threading.Event, budget_s: float | None = None) -> Any:
    """Run a (bounded) network call where Stop does not have to wait for it: the caller returns
    as soon as `cancel` is set; the call itself ends on its own within the transport's bounds."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=target, name="dmdesk-cloud-call", daemon=True)
    worker.start()
    deadline = time.monotonic() + budget_s if budget_s is not None else None
    while worker.is_alive():
        if cancel.is_set():
            raise _Interrupted()
        if deadline is not None and time.monotonic() > deadline:
            raise CloudUnreachable(f"no answer within {budget_s:g} s")
        worker.join(0.05)
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _since(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S UTC")


class DeepLakeCloudBackend:
    name = "deeplake"

    def __init__(
        self,
        token_provider: Callable[[], str | None],
        embedding_factory: Callable[[], EmbeddingFunction],
        open_store: Callable[[str, str, EmbeddingFunction], Any] = open_cloud_store,
        poll_interval_s: float = 15.0,
        patience_s: float = 600.0,
        deadline_s: float = 12 * 3600.0,
    ) -> None:
        self._token = token_provider
        self._embedding_factory = embedding_factory
        self._open = open_store
        self.poll_interval_s = poll_interval_s
        self.patience_s = patience_s
        self.deadline_s = deadline_s

    # -- the three ways in -----------------------------------------------------------------------

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
        return self._submit(store, path, request, embedding, on_job_id, progress, cancel)

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

    def resume(
        self,
        request: TrainingRequest,
        *,
        job_id: str,
        on_job_id: Callable[[str], None],
        progress: ProgressFn,
        cancel: threading.Event,
    ) -> dict[str, Any]:
        """Proceed on a run that already has a job: ask DeepLake what became of it first."""
        path = request.vector_store_path or ""
        store, embedding = self._open_store(path, job_id)
        try:
            status: dict[str, Any] | None = _call(lambda: self.job_status(store, job_id), cancel)
        except _Interrupted:
            raise Cancelled() from None
        except Exception as exc:
            if type(exc).__name__ != "ResourceNotFoundException":
                raise TrainingError(explain(exc, path, job_id), job_id=job_id) from None
            status = None
        state = str((status or {}).get("status", "")).lower()
        if status is None or state in FAILED_STATES | CANCELLED_STATES:
            why = f"was {state}" if status is not None else "no longer exists"
            progress(0.0, f"DeepLake job {job_id} {why}: submitting the approved pairs again")
            return self._submit(store, path, request, embedding, on_job_id, progress, cancel)
        if state in DONE_STATES:
            progress(0.97, f"DeepLake job {job_id} has completed: evaluating it")
            return self._evaluate(store, path, job_id, request, embedding, _summary(status), cancel)
        progress(0.0, f"DeepLake job {job_id} is still {state}: following it")
        return self._complete(store, path, job_id, request, embedding, progress, cancel)

    # -- steps -----------------------------------------------------------------------------------

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
            store = self._open(path, token, embedding)
        except Exception as exc:
            raise TrainingError(explain(exc, path), job_id=job_id) from None
        if getattr(store.deep_memory, "client", None) is None:
            self._diagnose_access(path, token, job_id)
        return store, embedding

    def _diagnose_access(self, path: str, token: str, job_id: str | None) -> NoReturn:
        """deeplake sets `deep_memory.client` to None both when Deep Memory is not enabled and
        when the availability check failed for any reason (it swallows every exception): ask
        again, so a 5xx or an outage is not reported as "no access"."""
        from deeplake.client.client import DeepMemoryBackendClient

        org = path[len("hub://") :].split("/")[0]
        try:
            with _quiet():
                client = DeepMemoryBackendClient(token=token)
                answer = client.request("GET", f"/api/organizations/{org}/features/deepmemory")
            available = bool(answer.json().get("available"))
        except Exception as exc:
            raise TrainingError(explain(exc, path), job_id=job_id) from None
        if available:  # it answered now: it was a passing fault
            raise TrainingError(
                "DeepLake Cloud did not confirm Deep Memory access just now (a passing fault). "
                "Proceed to retry.",
                job_id=job_id,
            )
        from deeplake.util.exceptions import DeepMemoryAccessError

        raise TrainingError(explain(DeepMemoryAccessError(), path), job_id=job_id)

    def _submit(
        self,
        store: Any,
        path: str,
        request: TrainingRequest,
        embedding: EmbeddingFunction,
        on_job_id: Callable[[str], None],
        progress: ProgressFn,
        cancel: threading.Event,
    ) -> dict[str, Any]:
        train_idx, _ = _split(request)
        queries = [request.queries[i] for i in train_idx]
        relevance = [[(str(cid), 1) for cid, _ in request.relevance[i]] for i in train_idx]
        progress(0.0, f"Submitting {len(queries)} pairs to DeepLake Cloud")
        try:
            with _quiet():
                job_id = store.deep_memory.train(
                    queries=queries,
                    relevance=relevance,
                    embedding_function=DeepLakeEmbedding(embedding),
                )
        except Exception as exc:
            raise TrainingError(explain(exc, path)) from None
        job_id = str(job_id)
        on_job_id(job_id)
        return self._complete(store, path, job_id, request, embedding, progress, cancel)

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
        last = self._follow(store, path, job_id, progress, cancel)
        progress(0.97, "Evaluating on the held-out pairs")
        return self._evaluate(store, path, job_id, request, embedding, last, cancel)

    def job_status(self, store: Any, job_id: str) -> dict[str, Any]:
        """The job as JSON, through deeplake's client (its `status()` only prints a table)."""
        response = store.deep_memory.client.request(
            "GET", f"/api/deepmemory/v1/jobs/{job_id}/status", timeout=STATUS_TIMEOUT_S
        )
        data = response.json()
        return data if isinstance(data, dict) else {}

    def _follow(
        self, store: Any, path: str, job_id: str, progress: ProgressFn, cancel: threading.Event
    ) -> dict[str, Any]:
        started = time.monotonic()
        trouble_since: float | None = None  # wall clock of the first failed poll in a row
        odd_since: float | None = None  # when an unknown state was first seen
        last: dict[str, Any] = {}
        while True:
            status: dict[str, Any] = {}
            try:
                status = _call(lambda: self.job_status(store, job_id), cancel)
                trouble_since = None
            except _Interrupted:
                self._stop(store, job_id, last)
            except Exception as exc:
                if not is_transient(exc):
                    raise TrainingError(
                        explain(exc, path, job_id), job_id=job_id, metrics=_partial(last)
                    ) from None
                trouble_since = trouble_since or time.time()
                if time.time() - trouble_since > self.patience_s:
                    raise TrainingError(
                        f"DeepLake Cloud unreachable since {_since(trouble_since)} while "
                        f"following job {job_id} ({explain(exc, path)}) Proceed follows the "
                        "job again; nothing is re-submitted while it trains.",
                        job_id=job_id,
                        metrics=_partial(last),
                    ) from None
                progress(
                    0.1,
                    f"DeepLake Cloud unreachable since {_since(trouble_since)}; retrying",
                )
            if status:
                last = _summary(status)
                state = str(status.get("status", "")).lower()
                info = status.get("progress") or {}
                if state in DONE_STATES:
                    return last
                if state in FAILED_STATES | CANCELLED_STATES:
                    reason = info.get("error") if isinstance(info, dict) else None
                    raise TrainingError(
                        f"DeepLake reports the training job {job_id} {state}"
                        + (f": {reason}" if reason else "")
                        + ". Proceed submits the same pairs again.",
                        job_id=job_id,
                        metrics=_partial(last),
                    )
                if state in RUNNING_STATES:
                    odd_since = None
                else:
                    odd_since = odd_since or time.monotonic()
                    if time.monotonic() - odd_since > self.patience_s:
                        raise TrainingError(
                            f"DeepLake reports job {job_id} in state {state or '(none)'!r}, "
                            f"which dmdesk does not know, for {self.patience_s / 60:.0f} min. "
                            "Check it in the Activeloop app; Proceed follows it again.",
                            job_id=job_id,
                            metrics=_partial(last),
                        )
                if time.monotonic() - started > self.deadline_s:
                    raise TrainingError(
                        f"DeepLake job {job_id} is still {state or '(no state)'!r} after "
                        f"{self.deadline_s / 3600:.1f} h; dmdesk stopped following it. Proceed "
                        "follows it again.",
                        job_id=job_id,
                        metrics=_partial(last),
                    )
                progress(
                    self._fraction(info, time.monotonic() - started), self._describe(state, info)
                )
            if cancel.wait(self.poll_interval_s):
                self._stop(store, job_id, last)

    def _stop(self, store: Any, job_id: str, last: dict[str, Any]) -> NoReturn:
        """Stop pressed: cancel the remote job, and say the truth about what DeepLake did.

        The cancel request goes through deeplake's client as `deep_memory.cancel` sends it, but
        not through `cancel_job` itself, which prints and returns False for a refusal and an
        outage alike."""
        never = threading.Event()
        try:
            _call(
                lambda: store.deep_memory.client.request(
                    "POST", f"/api/deepmemory/v1/jobs/{job_id}/cancel", timeout=STATUS_TIMEOUT_S
                ),
                never,
                budget_s=CANCEL_BUDGET_S,
            )
        except Exception as exc:
            why = (
                "could not be reached to cancel it"
                if type(exc).__name__ in _UNREACHABLE
                else f"refused to cancel it ({str(exc).strip() or type(exc).__name__})"
            )
            raise TrainingError(
                f"Stopped following DeepLake job {job_id}, but DeepLake {why}: the job may "
                "still be training remotely. Proceed follows it again (nothing is submitted "
                "twice).",
                job_id=job_id,
                metrics=_partial(last),
            ) from None
        raise Cancelled(
            f"Stopped by the administrator; DeepLake job {job_id} was cancelled. Proceed "
            "submits the approved pairs again."
        )

    def _evaluate(
        self,
        store: Any,
        path: str,
        job_id: str,
        request: TrainingRequest,
        embedding: EmbeddingFunction,
        last: dict[str, Any],
        cancel: threading.Event,
    ) -> dict[str, Any]:
        train_idx, held_idx = _split(request)
        unseen = set(_split_of(request).unseen) if held_idx != train_idx else set()
        queries = [request.queries[i] for i in held_idx]
        relevant = [{str(cid) for cid, _ in request.relevance[i]} for i in held_idx]
        try:
            vectors = embedding(queries)
            before = self._ranks(store, vectors, relevant, False, cancel)
            after = self._ranks(store, vectors, relevant, True, cancel)
        except _Interrupted:
            raise Cancelled(
                f"Stopped during the evaluation; DeepLake job {job_id} has completed. Proceed "
                "evaluates it again (nothing is re-trained)."
            ) from None
        except Exception as exc:
            raise TrainingError(
                f"DeepLake job {job_id} completed but its evaluation failed: "
                f"{explain(exc, path)} Proceed evaluates it again (nothing is re-trained).",
                job_id=job_id,
                metrics={"job": last, "evaluation": "failed"},
            ) from None
        return {
            "backend": "deeplake",
            "job_id": job_id,
            "before": metrics_from_ranks(before, DEFAULT_KS),
            "after": metrics_from_ranks(after, DEFAULT_KS),
            "heldout_ranks": {
                "before": before,
                "after": after,
                "unseen": [p for p, i in enumerate(held_idx) if i in unseen],
            },
            "train_pairs": len(train_idx),
            "heldout_pairs": len(held_idx),
            "approved_pairs": len(request.queries),
            "split_test_pairs": len(_split_of(request).test),
            "evaluated_on": "training pairs" if held_idx == train_idx else "held-out pairs",
            "job": last,
        }

    @staticmethod
    def _ranks(
        store: Any,
        vectors: Any,
        relevant: Sequence[set[str]],
        deep_memory: bool,
        cancel: threading.Event,
    ) -> list[int | None]:
        """Rank (1..EVAL_K) of each query's relevant chunk in the store's own search, or None."""
        ranks: list[int | None] = []
        for vector, rel in zip(vectors, relevant, strict=True):
            hits = _call(
                lambda v=vector: store.search(  # type: ignore[misc]
                    embedding=v, k=EVAL_K, deep_memory=deep_memory, return_tensors=["id"]
                ),
                cancel,
            )
            ids = [str(i) for i in hits.get("id", [])]
            ranks.append(next((n + 1 for n, i in enumerate(ids) if i in rel), None))
        return ranks

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
            if isinstance(info.get("eta"), int | float):
                parts.append(f"eta {info['eta']:.0f} s")
            if info.get("best_recall@10") is not None:
                # a string such as "85.5% (+2.6)%" (deeplake/client/test_client.py)
                parts.append(f"best recall@10 {info['best_recall@10']}")
        return ", ".join(parts)


def _split_of(request: TrainingRequest) -> Split:
    return split_pairs([r[0][0] if r else "" for r in request.relevance], request.queries)


def _split(request: TrainingRequest) -> tuple[list[int], list[int]]:
    """DeepLake trains on train + validation (it picks its own epochs); the test pairs — new
    questions about trained chunks, and chunks it never saw — judge the model
    (dmdesk.deepmemory.guard)."""
    split = _split_of(request)
    if not split.measurable:
        everything = list(range(len(request.queries)))
        return everything, everything
    return sorted(split.train + split.validation), split.test


def _summary(status: dict[str, Any]) -> dict[str, Any]:
    return {"status": status.get("status"), "progress": status.get("progress")}


def _partial(last: dict[str, Any]) -> dict[str, Any] | None:
    return {"job": last} if last else None
