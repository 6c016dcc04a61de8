"""Issue 16: a model that does not fit — the configured embedding against the store, or the
Deep Memory model in use against the embedding — is one clear message (exit 2), never a numpy
error from inside a search."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dmdesk.deepmemory import adapters
from dmdesk.domain.errors import InvalidSettings
from dmdesk.services import retrieval
from dmdesk.services.context import ServiceContext
from dmdesk.testing.llm_server import embedding_for
from tests.conftest import chunk_texts


@pytest.fixture
def ctx(make_ctx: Callable[..., ServiceContext], dmdesk_store) -> ServiceContext:
    texts = chunk_texts(12)
    store = dmdesk_store(
        texts, embeddings=np.array([embedding_for(t) for t in texts], dtype=np.float32)
    )
    return make_ctx(vector_store_path=store, embedding="openai:test-embedding")


def test_an_adapter_trained_on_another_dimension_is_named(ctx: ServiceContext) -> None:
    store = str(ctx.config.vector_store_path)
    dim = len(embedding_for("x"))
    adapters.save_adapter(ctx.config.data_dir, 7, np.eye(dim + 3), store, "openai:other-model", {})
    adapters.activate(ctx.config.data_dir, 7, store)
    with pytest.raises(InvalidSettings, match=r"Run #7's Deep Memory model was trained on"):
        retrieval.search(ctx, "topic number 3", 3, deep_memory=True)
    assert retrieval.search(ctx, "topic number 3", 3)  # without it, search still works


def test_evaluate_with_another_embedding_model_says_so(
    ctx: ServiceContext, make_ctx: Callable[..., ServiceContext], tmp_path: Path
) -> None:
    (tmp_path / "q.jsonl").write_text('{"_id": "q1", "text": "topic number 3"}\n')
    (tmp_path / "r.tsv").write_text("q1\tchunk-00003\t1\n")
    local = make_ctx(vector_store_path=ctx.config.vector_store_path, embedding="local")
    with pytest.raises(InvalidSettings, match=r"embeddings are \d+-d but DMDESK_EMBEDDING=local"):
        retrieval.evaluate(
            local, *retrieval.read_labelled(tmp_path / "q.jsonl", tmp_path / "r.tsv"), [1]
        )
