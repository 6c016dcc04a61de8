"""Scores of many queries against a whole store without ever holding the queries × chunks matrix.

Everything dmdesk computes over "every chunk for every question" — hard negatives, ranks for
recall and MRR, the round-trip and generic filters — goes through the two scans here. Both walk
the score matrix in tiles of at most `budget` bytes (a block of queries × a block of chunks,
scored with one BLAS product) and keep only what each query needs from a tile:

* `top_k`: the k best chunks of each query, merged tile by tile (exact: the same rows and scores
  as `topk(Q @ C.T)`; ties in score, which real embeddings practically never have, are broken
  by the lower row);
* `count_beating`: how many chunks score above (or at least) a per-query threshold — the rank
  of a relevant chunk is 1 + the chunks scoring strictly higher.

So memory is the tile plus O(queries × k), whatever the store's size; the time is the product's
(queries × chunks × d × 2 flops: ~45–50 GFLOPS on the 2-core machine, so 50k questions against
1M chunks of 384-d cost about 13 minutes — measured in bench/local_scale.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from dmdesk.domain.errors import Cancelled

BUDGET = 64 * 2**20  # bytes of one score tile
QUERY_BLOCK = 1024  # queries scored together (a wide enough product for BLAS)

Progress = Callable[[int, int], None]  # (queries done, queries in all)


def _tiles(n_queries: int, n_corpus: int, budget: int) -> tuple[int, int]:
    qb = max(1, min(n_queries, QUERY_BLOCK))
    cb = max(1, min(n_corpus, budget // (4 * qb)))
    return qb, cb


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled()


def top_k(
    queries: NDArray[np.float32],
    corpus: NDArray[np.float32],
    k: int,
    *,
    budget: int = BUDGET,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The k best corpus rows of each query (by dot product), best first: (scores, rows), each
    queries × min(k, len(corpus))."""
    n, m = len(queries), len(corpus)
    k = min(k, m)
    out_s = np.empty((n, k), np.float32)
    out_i = np.empty((n, k), np.int64)
    if n == 0 or k == 0:
        return out_s, out_i
    qb, cb = _tiles(n, m, budget)
    for qs in range(0, n, qb):
        q = queries[qs : qs + qb]
        best_s = np.full((len(q), 0), -np.inf, np.float32)
        best_i = np.zeros((len(q), 0), np.int64)
        for cs in range(0, m, cb):
            _check(cancel)
            s = q @ corpus[cs : cs + cb].T
            if s.shape[1] > k:  # the tile's own k best, then merge with the running k best
                part = np.argpartition(-s, k - 1, axis=1)[:, :k]
                s = np.take_along_axis(s, part, axis=1)
                idx = part + cs
            else:
                idx = np.broadcast_to(np.arange(cs, cs + s.shape[1]), s.shape)
            best_s = np.concatenate([best_s, s], axis=1)
            best_i = np.concatenate([best_i, idx], axis=1)
            if best_s.shape[1] > k:
                keep = np.lexsort((best_i, -best_s), axis=1)[:, :k]
                best_s = np.take_along_axis(best_s, keep, axis=1)
                best_i = np.take_along_axis(best_i, keep, axis=1)
        order = np.lexsort((best_i, -best_s), axis=1)
        out_s[qs : qs + len(q)] = np.take_along_axis(best_s, order, axis=1)
        out_i[qs : qs + len(q)] = np.take_along_axis(best_i, order, axis=1)
        if progress is not None:
            progress(qs + len(q), n)
    return out_s, out_i


def count_beating(
    queries: NDArray[np.float32],
    corpus: NDArray[np.float32],
    thresholds: Sequence[tuple[NDArray[np.float32], bool]],
    *,
    exclude: NDArray[np.int64] | None = None,
    budget: int = BUDGET,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> list[NDArray[np.int64]]:
    """For each (threshold per query, strict) the number of corpus rows whose score for the
    query is > the threshold (strict) or ≥ it — all thresholds counted in one pass. The row
    `exclude[i]` (query i's own chunk) is never counted for query i: its threshold usually comes
    from its own score computed apart, which may differ from the tile's in the last bit."""
    n, m = len(queries), len(corpus)
    counts = [np.zeros(n, np.int64) for _ in thresholds]
    if n == 0 or m == 0:
        return counts
    qb, cb = _tiles(n, m, budget)
    for qs in range(0, n, qb):
        q = queries[qs : qs + qb]
        limits = [
            (np.asarray(t[qs : qs + qb], np.float32)[:, None], strict) for t, strict in thresholds
        ]
        own = None if exclude is None else exclude[qs : qs + qb]
        for cs in range(0, m, cb):
            _check(cancel)
            s = q @ corpus[cs : cs + cb].T
            if own is not None:  # take the own chunk out of the comparison
                mine = np.flatnonzero((own >= cs) & (own < cs + s.shape[1]))
                s[mine, own[mine] - cs] = -np.inf
            for c, (limit, strict) in zip(counts, limits, strict=True):
                c[qs : qs + len(q)] += (s > limit if strict else s >= limit).sum(axis=1)
        if progress is not None:
            progress(qs + len(q), n)
    return counts


def relevant_ranks(
    queries: NDArray[np.float32],
    corpus: NDArray[np.float32],
    relevant: Sequence[Sequence[int]],
    *,
    budget: int = BUDGET,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> list[NDArray[np.int64]]:
    """For each query, the ranks (1-based) of its relevant corpus rows: one row per (query,
    relevant chunk), so a query with three relevant chunks is counted three times, each against
    its own score."""
    owner = np.repeat(np.arange(len(relevant)), [len(r) for r in relevant])
    rows = np.fromiter((c for r in relevant for c in r), np.int64, count=len(owner))
    one_each = np.array_equal(owner, np.arange(len(queries)))
    expanded = queries if one_each else queries[owner]
    own = np.einsum("ij,ij->i", expanded, corpus[rows]).astype(np.float32)
    (above,) = count_beating(
        expanded,
        corpus,
        [(own, True)],
        exclude=rows,
        budget=budget,
        cancel=cancel,
        progress=progress,
    )
    ranks = 1 + above
    bounds = np.cumsum([0, *(len(r) for r in relevant)])
    return [ranks[bounds[i] : bounds[i + 1]] for i in range(len(relevant))]
