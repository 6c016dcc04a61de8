"""The local engine's adapter on a corpus where the right adapter is known: every question's
embedding is a fixed rotation R of its chunk's embedding, so W = Rᵀ is perfect."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from dmdesk.deepmemory.local import LocalEngineParams, train_adapter
from dmdesk.deepmemory.metrics import holdout_split, retrieval_metrics
from dmdesk.domain.errors import Cancelled
from dmdesk.embeddings import normalise


def rotated_problem(n_corpus: int = 400, n_pairs: int = 300, d: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    corpus = normalise(rng.normal(size=(n_corpus, d)))
    rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
    positives = rng.choice(n_corpus, size=n_pairs, replace=False)
    noise = 0.05 * rng.normal(size=(n_pairs, d))
    queries = normalise(corpus[positives] @ rotation.T + noise)
    return corpus, queries, positives, rotation


def test_adapter_learns_a_known_rotation() -> None:
    corpus, queries, positives, _ = rotated_problem()
    train, held = holdout_split(len(queries))
    rel = [[int(positives[i])] for i in held]
    before = retrieval_metrics(queries[held], corpus, rel)
    epochs: list[int] = []
    W, history = train_adapter(
        queries,
        corpus,
        positives,
        train,
        held,
        LocalEngineParams(max_epochs=60),
        lambda e, _m: epochs.append(e),
        threading.Event(),
    )
    after = retrieval_metrics(normalise(queries[held] @ W.T), corpus, rel)
    assert before["recall@1"] < 0.2  # a random rotation: retrieval is near chance
    assert after["recall@1"] >= 0.9
    assert after["mrr"] > before["mrr"]
    assert epochs == list(range(1, len(history) + 1))


def test_identity_start_changes_nothing_before_training() -> None:
    corpus, queries, positives, _ = rotated_problem(seed=1)
    train, held = holdout_split(len(queries))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        train_adapter(
            queries, corpus, positives, train, held, LocalEngineParams(), lambda *a: None, cancel
        )
