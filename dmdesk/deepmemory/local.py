"""dmdesk's local Deep Memory engine: a query-side adapter learned offline.

Deep Memory on DeepLake Cloud learns a transformation of query embeddings from (question,
relevant chunk) pairs; this engine does the same on the admin's machine:

* chunk embeddings are the store's own `embedding` tensor (frozen); only questions are embedded;
* the adapter is a d×d matrix W, initialised to the identity (so before training it changes
  nothing), applied as q' = normalise(W q);
* loss: InfoNCE at temperature τ over the batch's positives (in-batch negatives) plus hard
  negatives mined from the whole store with the current W each epoch, plus λ‖W − I‖² to stay
  near the identity (few pairs, many parameters);
* at a real knowledge base's size nothing holds a questions × chunks matrix: every scan of the
  store is block-wise (dmdesk.deepmemory.blockwise), and once questions × chunks passes 10⁸ the
  per-epoch scans are replaced by a candidate pool per question found once under W = I (64 for
  the hard negatives, re-scored under W every epoch; 100 for validation). Validation uses at
  most 2,000 questions, the held-out test at most 5,000 (evenly spaced), always ranked exactly
  over the whole store. Before the store is read the memory it needs is checked
  (dmdesk.deepmemory.memory): a run that cannot fit fails with that message, never an OOM kill;
* pairs are split into train / validation / test by chunk and question
  (dmdesk.deepmemory.guard.split_pairs: new questions about trained chunks, as Deep Memory is
  used, plus an unseen-chunks slice); for each candidate strength λ training stops early when
  validation MRR has not improved for `patience` epochs and keeps the best W; the strength with
  the best validation MRR wins, and W = I when none beats it;
* metrics: recall@1/3/5/10 and MRR on the test pairs (never trained or validated on), before
  (W = I) and after, with per-query ranks (and those of the store's active model) for the
  activation guard (dmdesk.deepmemory.guard.decide), and the same for the store's evaluation
  set of real questions when the admin saved one (dmdesk.deepmemory.evalset). The engine saves
  the adapter; it never activates it — the training job does, when the guard says so.

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
from numpy.typing import NDArray

from dmdesk.deepmemory import adapters, blockwise, evalset, memory
from dmdesk.deepmemory.base import ProgressFn, TrainingRequest
from dmdesk.deepmemory.guard import split_pairs
from dmdesk.deepmemory.metrics import DEFAULT_KS, metrics_from_ranks
from dmdesk.domain.errors import Cancelled, TrainingError
from dmdesk.embeddings import EmbeddingFunction, normalise
from dmdesk.llm.base import prepare_model
from dmdesk.vectorstore.service import VectorStoreService

log = logging.getLogger(__name__)


# Candidate pulls towards the identity (λ), chosen on the validation pairs: weak pairs need a
# strong pull, clean pairs a weak one; "no change" (W = I) is always a candidate too.
STRENGTHS = (1e-3, 1e-2, 1e-1)

# Questions ranked for validation (every epoch) and for the held-out test (exactly, over the
# whole store, before and after): beyond these, an evenly spaced sample, said in the metrics.
# 5,000 test questions give the MRR to about ±0.01; the rest of the split is left unused.
MAX_VALIDATION = 2_000
MAX_TEST = 5_000


def sample(idx: list[int], limit: int) -> list[int]:
    """At most `limit` of `idx`, evenly spaced (deterministic: a re-submitted run measures on
    the same pairs)."""
    if len(idx) <= limit:
        return idx
    return [idx[i * len(idx) // limit] for i in range(limit)]


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
    tile_bytes: int = blockwise.BUDGET  # one score tile of the block-wise scans
    # Above these (queries × chunks), per-epoch scans of the whole store are replaced by a
    # candidate pool per question, found once under W = I and re-scored under W each epoch.
    exact_mining_limit: int = 100_000_000  # ~1.5 s an epoch for the whole store
    exact_validation_limit: int = 100_000_000
    pool: int = 64  # candidates per training question (hard negatives come from them)
    validation_pool: int = 100  # candidates per validation question


class PositiveRanks:
    """Ranks of each question's own chunk under a transform W, for validation.

    Exact (a block-wise count over the store) while questions × chunks is small; beyond, each
    question's `pool` best chunks under W = I are found once, and the rank under W is 1 + the
    pool's chunks scoring above the positive — the exact rank whenever no chunk outside the pool
    can beat it (the usual case near the identity), a lower bound otherwise. It orders
    candidate strengths and epochs; the held-out test is always ranked exactly.
    """

    def __init__(
        self,
        queries: NDArray[np.float32],
        corpus: NDArray[np.float32],
        positives: NDArray[np.float32],
        params: LocalEngineParams,
        cancel: threading.Event | None = None,
    ) -> None:
        self.queries, self.corpus = queries, corpus
        self.positives = positives.astype(np.int64)
        self.params, self.cancel = params, cancel
        self.exact = len(queries) * len(corpus) <= params.exact_validation_limit
        self.pool: NDArray[np.int64] | None = None
        if not self.exact:
            _, self.pool = blockwise.top_k(
                queries, corpus, params.validation_pool, budget=params.tile_bytes, cancel=cancel
            )

    def ranks(self, W: NDArray[np.float32] | None) -> NDArray[np.int64]:
        q = self.queries if W is None else normalise(self.queries @ W.T)
        if self.pool is None:
            rel = [[int(p)] for p in self.positives]
            found = blockwise.relevant_ranks(
                q, self.corpus, rel, budget=self.params.tile_bytes, cancel=self.cancel
            )
            return np.array([int(r[0]) for r in found], np.int64)
        pos = np.einsum("ij,ij->i", q, self.corpus[self.positives])
        out = np.empty(len(q), np.int64)
        for s in range(0, len(q), 1024):
            rows = self.pool[s : s + 1024]
            scores = np.einsum("ijk,ik->ij", self.corpus[rows], q[s : s + 1024])
            above = (scores > pos[s : s + 1024, None]) & (
                rows != self.positives[s : s + 1024, None]
            )
            out[s : s + 1024] = 1 + above.sum(axis=1)
        return out

    def metrics(self, W: NDArray[np.float32] | None) -> dict[str, float]:
        found = self.ranks(W)
        return dict(metrics_from_ranks([int(r) for r in found], DEFAULT_KS))


def hard_negative_pool(
    queries: NDArray[np.float32],
    corpus: NDArray[np.float32],
    params: LocalEngineParams,
    cancel: threading.Event,
    progress: Callable[[int, int], None] | None = None,
) -> NDArray[np.int64] | None:
    """The candidate pool of each training question (rows, W = I), or None when mining the whole
    store every epoch is cheap enough (then every epoch mines exactly with the current W)."""
    if len(queries) * len(corpus) <= params.exact_mining_limit:
        return None
    k = max(params.pool, params.hard_negatives + 1)
    found = blockwise.top_k(
        queries, corpus, k, budget=params.tile_bytes, cancel=cancel, progress=progress
    )
    return found[1]


def _mine(
    qt: NDArray[np.float32],
    corpus: NDArray[np.float32],
    pool: NDArray[np.int64] | None,
    k: int,
    params: LocalEngineParams,
    cancel: threading.Event,
) -> NDArray[np.int64]:
    """The k best chunks of each (transformed) training question: over the whole store, block
    by block, or over its candidate pool."""
    if pool is None:
        return blockwise.top_k(qt, corpus, k, budget=params.tile_bytes, cancel=cancel)[1]
    out = np.empty((len(qt), min(k, pool.shape[1])), np.int64)
    for s in range(0, len(qt), 1024):  # 1024 × pool × d floats at a time, not all of them
        rows = pool[s : s + 1024]
        scores = np.einsum("ijk,ik->ij", corpus[rows], qt[s : s + 1024])
        best = np.argsort(-scores, axis=1, kind="stable")[:, : out.shape[1]]
        out[s : s + 1024] = np.take_along_axis(rows, best, axis=1)
    return out


def train_adapter(
    queries: NDArray[np.float32],
    corpus: NDArray[np.float32],
    positives: NDArray[np.float32],
    train_idx: list[int],
    held_idx: list[int],
    params: LocalEngineParams,
    progress: Callable[[int, dict[str, float]], None],
    cancel: threading.Event,
    *,
    validation: PositiveRanks | None = None,
    pool: NDArray[np.int64] | None = None,
    pool_given: bool = False,
) -> tuple[NDArray[np.float32], list[dict[str, float]]]:
    """Learn W. `positives[i]` is the corpus row of query i. Returns the best W and the per-epoch
    held-out history. `validation` (the held-out questions' ranker) and `pool` (the training
    questions' candidate pool, with `pool_given`) can be built once for several strengths."""
    import torch

    if cancel.is_set():
        raise Cancelled()
    torch.manual_seed(params.seed)
    d = corpus.shape[1]
    corpus = np.ascontiguousarray(corpus, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    C = torch.from_numpy(corpus)
    Q = torch.from_numpy(queries)
    pos = torch.from_numpy(positives.astype(np.int64))
    tr = torch.tensor(train_idx, dtype=torch.long)
    eye = torch.eye(d)
    W = torch.nn.Parameter(eye.clone())
    opt = torch.optim.Adam([W], lr=params.learning_rate)
    if validation is None:
        validation = PositiveRanks(queries[held_idx], corpus, positives[held_idx], params, cancel)
    if not pool_given:
        pool = hard_negative_pool(queries[train_idx], corpus, params, cancel)

    def held_mrr(matrix: torch.Tensor) -> dict[str, float]:
        assert validation is not None
        return validation.metrics(matrix.numpy())

    best = held_mrr(eye)
    best_W = eye.clone()
    history: list[dict[str, float]] = []
    stale = 0
    k = min(params.hard_negatives + 1, len(corpus))
    for epoch in range(params.max_epochs):
        if cancel.is_set():
            raise Cancelled()
        with torch.no_grad():  # mine hard negatives with the current W
            qt = torch.nn.functional.normalize(Q[tr] @ W.T, dim=1).numpy()
        top = torch.from_numpy(_mine(qt, corpus, pool, k, params, cancel))
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
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
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
            dim = store.embedding_dim()
            if dim is not None:  # before the store is read: say so now, not by an OOM kill
                memory.check_fits(
                    "training Deep Memory locally",
                    store.row_count(),
                    dim,
                    len(request.queries) + len(request.evaluation or ()),
                    max(self.params.pool, self.params.validation_pool),
                )
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
        split = split_pairs([ids[row] for _, row in pairs], [q for q, _ in pairs])
        if split.measurable:
            train_idx = split.train
            val_idx = sample(split.validation, MAX_VALIDATION)
            test_idx = sample(split.test, MAX_TEST)
        else:  # too few pairs: train on all; the guard will not activate an unmeasured model
            train_idx = val_idx = test_idx = list(range(len(pairs)))
        strengths = self.strengths if split.measurable else (self.params.identity_weight,)
        total_epochs = self.params.max_epochs * len(strengths)
        done_epochs = 0
        queries = np.ascontiguousarray(queries, dtype=np.float32)

        def scanning(what: str, at: float) -> Callable[[int, int], None]:
            return lambda done, n: progress(at, f"{what}: {done:,}/{n:,} questions")

        progress(0.04, f"Finding candidate chunks among {len(corpus):,}")
        validation = PositiveRanks(
            queries[val_idx], corpus, positives[val_idx], self.params, cancel
        )
        pool = hard_negative_pool(
            queries[train_idx],
            corpus,
            self.params,
            cancel,
            scanning(f"Finding hard negatives among {len(corpus):,} chunks", 0.04),
        )
        candidates: list[tuple[float, float, NDArray[np.float32], int]] = []
        for strength in strengths:

            def on_epoch(
                epoch: int, held: dict[str, float], w: float = strength, base: int = done_epochs
            ) -> None:
                progress(
                    0.05 + 0.85 * (base + epoch) / total_epochs,
                    f"strength {w:g}, epoch {epoch}: validation MRR {held['mrr']:.3f}",
                )

            params = replace(self.params, identity_weight=strength)
            W, history = train_adapter(
                queries,
                corpus,
                positives,
                train_idx,
                val_idx,
                params,
                on_epoch,
                cancel,
                validation=validation,
                pool=pool,
                pool_given=True,
            )
            done_epochs += self.params.max_epochs
            candidates.append((validation.metrics(W)["mrr"], strength, W, len(history)))
        identity_val = validation.metrics(None)["mrr"]
        val_mrr_best, strength, W, epochs = max(candidates, key=lambda c: c[0])
        if val_mrr_best <= identity_val:  # nothing beat "no change" on validation
            W, strength, epochs = np.eye(corpus.shape[1], dtype=np.float32), 0.0, 0
        rel = [[int(positives[i])] for i in test_idx]
        test_q = queries[test_idx]

        def test_ranks(
            q: NDArray[np.float32], what: str
        ) -> list[int]:  # exact, over the whole store
            found = blockwise.relevant_ranks(
                q, corpus, rel, cancel=cancel, progress=scanning(what, 0.95)
            )
            return [int(r.min()) for r in found]

        unseen = set(split.unseen) if split.measurable else set()
        heldout_ranks: dict[str, Any] = {
            "before": test_ranks(test_q, "Ranking held-out questions without Deep Memory"),
            "after": test_ranks(normalise(test_q @ W.T), "Ranking held-out questions with it"),
            "unseen": [p for p, i in enumerate(test_idx) if i in unseen],
        }
        before = metrics_from_ranks(heldout_ranks["before"])
        after = metrics_from_ranks(heldout_ranks["after"])
        store_path = request.vector_store_path or ""
        current = adapters.active_adapter(self.data_dir, store_path)
        if current is not None and current.matrix.shape == W.shape:
            heldout_ranks["active"] = test_ranks(
                current.apply(test_q), "Ranking held-out questions with the active model"
            )
            heldout_ranks["active_run"] = current.run_id
        evaluation = self._on_evaluation_set(
            request, embed, ids, corpus, W, current, cancel, scanning
        )
        seconds = time.perf_counter() - t0
        metrics: dict[str, Any] = {
            "backend": "local",
            "before": before,
            "after": after,
            "heldout_ranks": heldout_ranks,
            "train_pairs": len(train_idx),
            "validation_pairs": len(val_idx) if split.measurable else 0,
            "heldout_pairs": len(test_idx),
            "approved_pairs": len(pairs),
            "split_test_pairs": len(split.test),
            "evaluated_on": "held-out pairs" if split.measurable else "training pairs",
            "strength": strength,
            "validation_mrr": {"identity": identity_val, "chosen": max(val_mrr_best, identity_val)},
            "validation_ranking": "exact" if validation.exact else "candidate pool",
            "hard_negatives_from": "whole store" if pool is None else "candidate pool",
            "epochs": epochs,
            "seconds": round(seconds, 2),
            "pairs_per_second": round(len(train_idx) * done_epochs / max(seconds, 1e-9), 1),
        }
        if evaluation:
            metrics |= evaluation
        if split.measurable and len(split.test) > len(test_idx):
            metrics["heldout_pairs_available"] = len(split.test)
        if split.measurable and len(split.validation) > len(val_idx):
            metrics["validation_pairs_available"] = len(split.validation)
        adapters.save_adapter(
            self.data_dir, request.run_id, W, store_path, getattr(embed, "name", "?"), metrics
        )
        progress(1.0, f"held-out MRR {before['mrr']:.3f} → {after['mrr']:.3f}")
        return metrics

    @staticmethod
    def _on_evaluation_set(
        request: TrainingRequest,
        embed: EmbeddingFunction,
        ids: list[str],
        corpus: NDArray[np.float32],
        W: NDArray[np.float32],
        current: adapters.Adapter | None,
        cancel: threading.Event,
        scanning: Callable[[str, float], Callable[[int, int], None]],
    ) -> dict[str, Any]:
        """Ranks of the store's evaluation set (real questions) without Deep Memory, with the new
        model and with the active one — exact, over the whole store — for the guard."""
        found = request.evaluation
        if not found:
            return {}
        kept = evalset.answerable(found.questions, found.relevant, ids)
        if not kept.questions:
            return {"evaluation_set": {"questions": 0, "source": found.source}}
        q = np.ascontiguousarray(embed(kept.questions), dtype=np.float32)
        rel = kept.rows

        def ranks(vectors: NDArray[np.float32], what: str) -> list[int]:
            return [
                int(r.min())
                for r in blockwise.relevant_ranks(
                    vectors, corpus, rel, cancel=cancel, progress=scanning(what, 0.97)
                )
            ]

        out: dict[str, Any] = {
            "before": ranks(q, "Ranking the evaluation set without Deep Memory"),
            "after": ranks(normalise(q @ W.T), "Ranking the evaluation set with it"),
        }
        if current is not None and current.matrix.shape == W.shape:
            out["active"] = ranks(current.apply(q), "Ranking the evaluation set, active model")
        return {
            "evaluation_ranks": out,
            "evaluation_set": {
                "questions": len(kept.questions),
                "skipped": len(found) - len(kept.questions),
                "source": found.source,
                "saved_at": found.saved_at,
                "before": metrics_from_ranks(out["before"]),
                "after": metrics_from_ranks(out["after"]),
            },
        }
