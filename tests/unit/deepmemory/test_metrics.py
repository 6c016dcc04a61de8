"""recall@k and MRR against a brute-force numpy ranking."""

from __future__ import annotations

import numpy as np
import pytest

from dmdesk.deepmemory.metrics import holdout_split, retrieval_metrics
from dmdesk.embeddings import normalise


def brute_force(q: np.ndarray, c: np.ndarray, rel: list[list[int]], ks) -> dict[str, float]:
    order = np.argsort(-(q @ c.T), axis=1)
    out = {}
    for k in ks:
        out[f"recall@{k}"] = float(
            np.mean([len(set(order[i, :k]) & set(r)) / len(r) for i, r in enumerate(rel)])
        )
    out["mrr"] = float(
        np.mean(
            [
                1.0 / (1 + min(int(np.where(order[i] == x)[0][0]) for x in r))
                for i, r in enumerate(rel)
            ]
        )
    )
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_a_brute_force_ranking(seed: int) -> None:
    rng = np.random.default_rng(seed)
    c = normalise(rng.normal(size=(300, 16)))
    q = normalise(rng.normal(size=(700, 16)))  # more than one block of 256
    rel = [list(rng.choice(300, size=rng.integers(1, 4), replace=False)) for _ in range(700)]
    got = retrieval_metrics(q, c, rel, (1, 3, 10))
    want = brute_force(q, c, rel, (1, 3, 10))
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert got["queries"] == 700


def test_holdout_split_is_deterministic_and_a_fifth() -> None:
    train, held = holdout_split(100)
    assert (train, held) == holdout_split(100)
    assert len(held) == 20 and set(train).isdisjoint(held) and len(train) + len(held) == 100
    assert holdout_split(7) == (list(range(7)), list(range(7)))
