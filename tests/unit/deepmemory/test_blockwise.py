"""Block-wise scans give what the full questions × chunks matrix gives, with memory of one tile.

Every comparison is against the obvious full-matrix computation on a small store, with tiles
small enough (a few KB) that the scans cross many query and chunk blocks and their edges.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from dmdesk.deepmemory import blockwise
from dmdesk.deepmemory.local import LocalEngineParams, PositiveRanks, train_adapter
from dmdesk.deepmemory.metrics import holdout_split
from dmdesk.domain.errors import Cancelled
from dmdesk.embeddings import normalise
from tests.unit.deepmemory.test_local_engine import rotated_problem

TINY = 4 * 37 * 7  # a tile of 7 chunks for 37 queries: blocks end mid-way everywhere


def problem(n_q: int = 123, n_c: int = 517, d: int = 16, seed: int = 3):
    rng = np.random.default_rng(seed)
    return normalise(rng.normal(size=(n_q, d))), normalise(rng.normal(size=(n_c, d)))


def test_top_k_equals_the_full_matrix_topk(monkeypatch) -> None:
    monkeypatch.setattr(blockwise, "QUERY_BLOCK", 37)
    q, c = problem()
    scores, rows = blockwise.top_k(q, c, 17, budget=TINY)
    full = torch.topk(torch.from_numpy(q @ c.T), 17, dim=1)
    assert np.array_equal(rows, full.indices.numpy())
    assert np.allclose(scores, full.values.numpy(), atol=1e-6)


def test_top_k_of_more_than_the_store_is_the_whole_store_in_order() -> None:
    q, c = problem(n_q=5, n_c=9)
    _scores, rows = blockwise.top_k(q, c, 50, budget=64)
    assert rows.shape == (5, 9)
    assert np.array_equal(rows, np.argsort(-(q @ c.T), axis=1))


def test_relevant_ranks_equal_the_full_matrix_with_several_relevant_chunks(monkeypatch) -> None:
    monkeypatch.setattr(blockwise, "QUERY_BLOCK", 37)
    q, c = problem()
    rng = np.random.default_rng(0)
    relevant = [list(rng.choice(len(c), size=1 + i % 3, replace=False)) for i in range(len(q))]
    got = blockwise.relevant_ranks(q, c, relevant, budget=TINY)
    full = q @ c.T
    for i, rel in enumerate(relevant):
        want = [1 + int((full[i] > full[i, r]).sum()) for r in rel]
        assert got[i].tolist() == want


def test_count_beating_counts_strictly_and_at_least_without_the_own_chunk() -> None:
    q, c = problem()
    own = np.arange(len(q)) % len(c)
    own_scores = np.einsum("ij,ij->i", q, c[own]).astype(np.float32)
    above, close = blockwise.count_beating(
        q, c, [(own_scores, True), (own_scores - 0.05, False)], exclude=own, budget=TINY
    )
    full = q @ c.T
    full[np.arange(len(q)), own] = -np.inf
    assert above.tolist() == (full > own_scores[:, None]).sum(axis=1).tolist()
    assert close.tolist() == (full >= own_scores[:, None] - 0.05).sum(axis=1).tolist()


def test_a_stop_interrupts_a_scan() -> None:
    q, c = problem()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        blockwise.top_k(q, c, 3, cancel=cancel)


def test_training_with_tiny_tiles_learns_the_same_adapter_as_with_one_tile() -> None:
    """Same hard negatives every epoch, same validation metrics: the same W and history."""
    corpus, queries, positives, _ = rotated_problem(seed=2)
    train, held = holdout_split(len(queries))

    def run(tile: int):
        params = LocalEngineParams(max_epochs=5, tile_bytes=tile)
        return train_adapter(
            queries, corpus, positives, train, held, params, lambda *a: None, threading.Event()
        )

    W_tiny, hist_tiny = run(4 * 64 * 5)
    W_one, hist_one = run(1 << 30)
    assert hist_tiny == hist_one
    assert np.array_equal(W_tiny, W_one)


def test_the_candidate_pool_ranks_exactly_while_no_outsider_can_beat_the_positive() -> None:
    corpus, queries, positives, _ = rotated_problem(seed=4)
    exact = PositiveRanks(queries, corpus, positives, LocalEngineParams())
    pooled = PositiveRanks(
        queries,
        corpus,
        positives,
        LocalEngineParams(exact_validation_limit=0, validation_pool=len(corpus)),
    )
    assert exact.exact and not pooled.exact
    assert np.array_equal(pooled.ranks(None), exact.ranks(None))
    rng = np.random.default_rng(0)
    W = np.eye(32, dtype=np.float32) + 0.05 * rng.normal(size=(32, 32)).astype(np.float32)
    assert np.array_equal(pooled.ranks(W), exact.ranks(W))
    small = PositiveRanks(
        queries, corpus, positives, LocalEngineParams(exact_validation_limit=0, validation_pool=10)
    )
    assert (small.ranks(W) <= exact.ranks(W)).all()  # a lower bound beyond the pool


def test_pool_mining_trains_and_beats_the_identity() -> None:
    """Above the exact limit the engine mines from candidate pools and still learns."""
    corpus, queries, positives, _ = rotated_problem(seed=5)
    train, held = holdout_split(len(queries))
    params = LocalEngineParams(
        max_epochs=60, exact_mining_limit=0, exact_validation_limit=0, pool=64
    )
    W, _history = train_adapter(
        queries, corpus, positives, train, held, params, lambda *a: None, threading.Event()
    )
    exact = PositiveRanks(queries[held], corpus, positives[held], LocalEngineParams())
    assert exact.metrics(W)["mrr"] > exact.metrics(None)["mrr"] + 0.2
