"""dmdesk's local Deep Memory engine: a query-side adapter learned offline.

Deep Memory on DeepLake Cloud learns a transformation of query embeddings from (question,
relevant chunk) pairs; this engine does the same on the admin's machine:

* chunk embeddings are the store's own `embedding` tensor (frozen); only questions are embedded;
* the adapter is a d×d matrix W, initialised to the identity (so before training it changes
  nothing), applied as q' = normalise(W q);
* loss: InfoNCE at temperature τ over the batch's positives (in-batch negatives) plus hard
  negatives mined from the whole store with the current W each epoch, plus λ‖W − I‖² to stay
  near the identity (few pairs, many parameters);
* pairs are split by chunk into train / validation / test (dmdesk.deepmemory.guard.split_pairs);
  for each candidate strength λ training stops early when validation MRR has not improved for
  `patience` epochs and keeps the best W; the strength with the best validation MRR wins, and
  W = I when none beats it;
* metrics: recall@1/3/5/10 and MRR on the test pairs (never trained or validated on), before
  (W = I) and after, with per-query ranks (and those of the store's active model) for the
  activation guard (dmdesk.deepmemory.guard.decide). The engine saves the adapter; it never
  activates it — the training job does, when the guard says so.

Published lifts of such adapters are modest (DESIGN.md): recall@1 may fall while recall@10 rises,
which is why several k are reported.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dmdesk.deepmemory import adapters
from dmdesk.deepmemory.base import ProgressFn, TrainingRequest
from dmdesk.deepmemory.guard import split_pairs
from dmdesk.deepmemory.metrics import DEFAULT_KS, ranks_of, retrieval_metrics
from dmdesk.domain.errors import Cancelled, TrainingError
from dmdesk.embeddings import EmbeddingFunction, normalise
from dmdesk.llm.base import prepare_model
from dmdesk.vectorstore.service import VectorStoreService

log = logging.getLogger(__name__)


# Candidate pulls towards the identity (λ), chosen on the validation pairs: weak pairs need a
# strong pull, clean pairs a weak one; "no change" (W = I) is always a candidate too.
STRENGTHS = (1e-3, 1e-2, 1e-1)


@dataclass
class LocalEngineParams:
    max_epochs: int = 40
    patience: int = 6
    batch_size: int = 64
    hard_negatives: int = 16
    temperature: float = 0.05
    learning_rate: float = 5e-3
    identity_weight: float = 1e-3
    seed: int = 0


def train_adapter(
    queries: np.ndarray,
    corpus: np.ndarray,
    positives: np.ndarray,
    train_idx: list[int],
    held_idx: list[int],
    params: LocalEngineParams,
    progress: Callable[[int, dict[str, float]], None],
    cancel: threading.Event,
) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Learn W. `positives[i]` is the corpus row of query i. Returns the best W and the per-epoch
    held-out history."""
    import torch

    torch.manual_seed(params.seed)
    d = corpus.shape[1]
    C = torch.from_numpy(np.ascontiguousarray(corpus, dtype=np.float32))
    Q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    pos = torch.from_numpy(positives.astype(np.int64))
    tr = torch.tensor(train_idx, dtype=torch.long)
    eye = torch.eye(d)
    W = torch.nn.Parameter(eye.clone())
    opt = torch.optim.Adam([W], lr=params.learning_rate)
    held_rel = [[int(positives[i])] for i in held_idx]

    def held_mrr(matrix: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            q = torch.nn.functional.normalize(Q[held_idx] @ matrix.T, dim=1).numpy()
        return retrieval_metrics(q, corpus, held_rel, DEFAULT_KS)

    best = held_mrr(eye)
    best_W = eye.clone()
    history: list[dict[str, float]] = []
    stale = 0
    k = min(params.hard_negatives + 1, len(corpus))
    for epoch in range(params.max_epochs):
        if cancel.is_set():
            raise Cancelled()
        with torch.no_grad():  # mine hard negatives with the current W
            qt = torch.nn.functional.normalize(Q[tr] @ W.T, dim=1)
            top = torch.topk(qt @ C.T, k, dim=1).indices
        hard = {int(i): top[j] for j, i in enumerate(tr.tolist())}
        order = tr[torch.randperm(len(tr))]
        for start in range(0, len(order), params.batch_size):
            batch = order[start : start + params.batch_size]
            cand = torch.unique(torch.cat([pos[batch], *(hard[int(i)] for i in batch)]))
            where = {int(c): n for n, c in enumerate(cand.tolist())}
            target = torch.tensor([where[int(p)] for p in pos[batch]])
            q = torch.nn.functional.normalize(Q[batch] @ W.T, dim=1)
            logits = q @ C[cand].T / params.temperature
            loss = torch.nn.functional.cross_entropy(logits, target)
            loss = loss + params.identity_weight * ((W - eye) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        current = held_mrr(W.detach())
        history.append(current)
        progress(epoch + 1, current)
        if current["mrr"] > best["mrr"] + 1e-6:
            best, best_W, stale = current, W.detach().clone(), 0
        else:
            stale += 1
            if stale >= params.patience:
                break
    return best_W.numpy(), history


class LocalEngineBackend:
    name = "local"

    def __init__(
        self,
        data_dir: Path,
        embedding_factory: Callable[[], EmbeddingFunction],
        vector_store_factory: Callable[[str | None], VectorStoreService],
        params: LocalEngineParams | None = None,
        strengths: tuple[float, ...] = STRENGTHS,
    ) -> None:
        self.data_dir = Path(data_dir)
        self._embedding_factory = embedding_factory
        self._store_factory = vector_store_factory
        self.params = params or LocalEngineParams()
        self.strengths = strengths

    def train(
        self,
        request: TrainingRequest,
        *,
        on_job_id: Callable[[str], None],
        progress: ProgressFn,
        cancel: threading.Event,
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        progress(0.0, "Loading the store's embeddings")
        store = self._store_factory(request.vector_store_path)
        embed = self._embedding_factory()
        try:
            ids, corpus = store.corpus_embeddings(
                embed,
                lambda n: progress(0.0, f"Embedding {n} chunks (the store has no embeddings)"),
            )
        finally:
            store.close()
        row_of = {cid: i for i, cid in enumerate(ids)}
        pairs = [
            (q, row_of[r[0][0]])
            for q, r in zip(request.queries, request.relevance, strict=True)
            if r and r[0][0] in row_of
        ]
        if not pairs:
            raise TrainingError("None of the approved pairs' chunks is in the store any more.")
        if cancel.is_set():
            raise Cancelled()
        prepare_model(embed, lambda what: progress(0.02, what))
        progress(0.02, f"Embedding {len(pairs)} questions")
        queries = embed([q for q, _ in pairs])
        if queries.shape[1] != corpus.shape[1]:
            raise TrainingError(
                f"The store's embeddings are {corpus.shape[1]}-d but the embedding "
                f"'{getattr(embed, 'name', '?')}' gives {queries.shape[1]}-d: set DMDESK_EMBEDDING "
                "to the model the store was built with, then Proceed."
            )
        positives = np.array([row for _, row in pairs])
        split = split_pairs([ids[row] for _, row in pairs])
        if split.measurable:
            train_idx, val_idx, test_idx = split.train, split.validation, split.test
        else:  # too few pairs: train on all; the guard will not activate an unmeasured model
            train_idx = val_idx = test_idx = list(range(len(pairs)))
        strengths = self.strengths if split.measurable else (self.params.identity_weight,)
        total_epochs = self.params.max_epochs * len(strengths)
        done_epochs = 0

        def rel(idx: list[int]) -> list[list[int]]:
            return [[int(positives[i])] for i in idx]

        candidates: list[tuple[float, float, np.ndarray, int]] = []
        for strength in strengths:

            def on_epoch(
                epoch: int, held: dict[str, float], w: float = strength, base: int = done_epochs
            ) -> None:
                progress(
                    0.05 + 0.9 * (base + epoch) / total_epochs,
                    f"strength {w:g}, epoch {epoch}: validation MRR {held['mrr']:.3f}",
                )

            params = replace(self.params, identity_weight=strength)
            W, history = train_adapter(
                queries, corpus, positives, train_idx, val_idx, params, on_epoch, cancel
            )
            done_epochs += self.params.max_epochs
            val_mrr = retrieval_metrics(normalise(queries[val_idx] @ W.T), corpus, rel(val_idx))
            candidates.append((val_mrr["mrr"], strength, W, len(history)))
        identity_val = retrieval_metrics(queries[val_idx], corpus, rel(val_idx))["mrr"]
        val_mrr_best, strength, W, epochs = max(candidates, key=lambda c: c[0])
        if val_mrr_best <= identity_val:  # nothing beat "no change" on validation
            W, strength, epochs = np.eye(corpus.shape[1], dtype=np.float32), 0.0, 0
        before = retrieval_metrics(queries[test_idx], corpus, rel(test_idx))
        q_after = normalise(queries[test_idx] @ W.T)
        after = retrieval_metrics(q_after, corpus, rel(test_idx))
        heldout_ranks: dict[str, Any] = {
            "before": ranks_of(queries[test_idx], corpus, rel(test_idx)),
            "after": ranks_of(q_after, corpus, rel(test_idx)),
        }
        store_path = request.vector_store_path or ""
        current = adapters.active_adapter(self.data_dir, store_path)
        if current is not None and current.matrix.shape == W.shape:
            heldout_ranks["active"] = ranks_of(
                current.apply(queries[test_idx]), corpus, rel(test_idx)
            )
            heldout_ranks["active_run"] = current.run_id
        seconds = time.perf_counter() - t0
        metrics: dict[str, Any] = {
            "backend": "local",
            "before": before,
            "after": after,
            "heldout_ranks": heldout_ranks,
            "train_pairs": len(train_idx),
            "validation_pairs": len(val_idx) if split.measurable else 0,
            "heldout_pairs": len(test_idx),
            "evaluated_on": "held-out pairs" if split.measurable else "training pairs",
            "strength": strength,
            "validation_mrr": {"identity": identity_val, "chosen": max(val_mrr_best, identity_val)},
            "epochs": epochs,
            "seconds": round(seconds, 2),
            "pairs_per_second": round(len(train_idx) * done_epochs / max(seconds, 1e-9), 1),
        }
        adapters.save_adapter(
            self.data_dir, request.run_id, W, store_path, getattr(embed, "name", "?"), metrics
        )
        progress(1.0, f"held-out MRR {before['mrr']:.3f} → {after['mrr']:.3f}")
        return metrics
