"""Retrieval metrics: recall@k and MRR, exactly, by rank.

The rank of a relevant chunk is 1 + the number of chunks scoring strictly higher for the query.
recall@k (BEIR's definition) is the share of a query's relevant chunks ranked ≤ k, averaged over
queries; MRR is 1 / the best rank of a relevant chunk, averaged. Scores are dot products of
normalised embeddings (cosine), scored tile by tile (dmdesk.deepmemory.blockwise), so memory stays
bounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dmdesk.deepmemory import blockwise

DEFAULT_KS = (1, 3, 5, 10)


def relevant_ranks(
    queries: NDArray[np.float32], corpus: NDArray[np.float32], relevant: Sequence[Sequence[int]]
) -> list[NDArray[np.int64]]:
    """For each query, the ranks (1-based) of its relevant corpus rows (block-wise: memory is one
    score tile, whatever the store's size)."""
    return blockwise.relevant_ranks(
        np.asarray(queries, np.float32), np.asarray(corpus, np.float32), relevant
    )


def ranks_of(
    queries: NDArray[np.float32], corpus: NDArray[np.float32], relevant: Sequence[Sequence[int]]
) -> list[int]:
    """The best rank of each query's relevant rows (for the activation guard)."""
    return [int(r.min()) for r in relevant_ranks(queries, corpus, relevant)]


def retrieval_metrics(
    queries: NDArray[np.float32],
    corpus: NDArray[np.float32],
    relevant: Sequence[Sequence[int]],
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float]:
    if len(queries) == 0:
        return {**{f"recall@{k}": 0.0 for k in ks}, "mrr": 0.0, "queries": 0}
    ranks = relevant_ranks(queries, corpus, relevant)
    result: dict[str, float] = {}
    for k in ks:
        result[f"recall@{k}"] = float(np.mean([(r <= k).mean() for r in ranks]))
    result["mrr"] = float(np.mean([1.0 / r.min() for r in ranks]))
    result["queries"] = len(ranks)
    return result


def holdout_split(n: int, every: int = 5) -> tuple[list[int], list[int]]:
    """Deterministic train/held-out split: every 5th pair is held out (20 %), so a re-submitted
    run (Proceed) trains and evaluates on exactly the same pairs. Under 10 pairs everything
    trains and the evaluation is on the training pairs (said in the metrics)."""
    if n < 10:
        idx = list(range(n))
        return idx, idx
    held = [i for i in range(n) if i % every == every - 1]
    train = [i for i in range(n) if i % every != every - 1]
    return train, held


def metrics_from_ranks(
    ranks: Sequence[int | None], ks: Sequence[int] = DEFAULT_KS
) -> dict[str, Any]:
    """recall@k and MRR from the rank of each query's (single) relevant chunk within the top
    results a search returned; None = not among them (so MRR is MRR@max(ks))."""
    n = len(ranks)
    if n == 0:
        return {**{f"recall@{k}": 0.0 for k in ks}, "mrr": 0.0, "queries": 0}
    result: dict[str, Any] = {
        f"recall@{k}": sum(1 for r in ranks if r is not None and r <= k) / n for k in ks
    }
    result["mrr"] = sum(1.0 / r for r in ranks if r) / n
    result["queries"] = n
    return result
