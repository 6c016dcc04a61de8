"""The local Deep Memory engine through the services: a real store with embeddings, the real
engine, a real adapter file; Proceed after a crash mid-training."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dmdesk.deepmemory import adapters
from dmdesk.deepmemory.local import LocalEngineBackend, LocalEngineParams
from dmdesk.domain.errors import RuleViolation
from dmdesk.domain.status import RunStatus
from dmdesk.jobs.runner import run_job
from dmdesk.services import retrieval
from dmdesk.services.context import ServiceContext
from dmdesk.services.runs import TrainingRunService
from dmdesk.vectorstore.service import create_local_store, open_store
from tests.helpers import insert_pairs, insert_run
from tests.unit.deepmemory.test_local_engine import rotated_problem

N = 400


class RotatedQuestions:
    """Embeds 'question about chunk-00042' as R·c₄₂ (+noise): the rotated problem, as text."""

    name = "test-rotated"

    def __init__(self, corpus: np.ndarray, rotation: np.ndarray, crash_first: bool = False):
        self.corpus, self.rotation = corpus, rotation
        self.crash_first = crash_first
        self.calls = 0

    def __call__(self, texts):
        self.calls += 1
        if self.crash_first and self.calls == 1:
            raise RuntimeError("embedding server went away")
        rows = [int(t.rsplit("-", 1)[1].rstrip("?")) for t in texts]
        rng = np.random.default_rng(len(texts))
        v = self.corpus[rows] @ self.rotation.T + 0.05 * rng.normal(size=(len(rows), 32))
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def rotated_store(tmp_path: Path):
    corpus, _, _, rotation = rotated_problem(n_corpus=N, n_pairs=10)
    path = tmp_path / "rotstore"
    ids = [f"chunk-{i:05d}" for i in range(N)]
    create_local_store(path, ids, [f"text {i}" for i in range(N)], embeddings=corpus)
    return path, corpus, rotation


def generated_run_with_pairs(ctx: ServiceContext, n_pairs: int = 300) -> int:
    run_id = insert_run(ctx, "generated", total=N)
    rng = np.random.default_rng(7)
    chunks = [f"chunk-{i:05d}" for i in rng.choice(N, size=n_pairs, replace=False)]
    insert_pairs(ctx, run_id, chunks, approved=True)
    return run_id


def use_engine(ctx: ServiceContext, embed: RotatedQuestions) -> None:
    ctx.backend_factory = lambda name, cfg: LocalEngineBackend(
        cfg.data_dir, lambda: embed, open_store, LocalEngineParams(max_epochs=60)
    )


def test_local_engine_completes_with_metrics_and_an_active_adapter(
    make_ctx: Callable[..., ServiceContext], rotated_store
) -> None:
    path, corpus, rotation = rotated_store
    ctx = make_ctx(vector_store_path=path)
    use_engine(ctx, RotatedQuestions(corpus, rotation))
    runs = TrainingRunService(ctx)
    run_id = generated_run_with_pairs(ctx)
    runs.start_training(run_id)
    run = run_job(runs.ctx, run_id)
    assert run.status is RunStatus.COMPLETED, run.error_message
    m = run.metrics
    assert m["backend"] == "local" and m["evaluated_on"] == "held-out pairs"
    # split by chunk: about 60 / 20 / 20, every pair in exactly one part
    assert m["train_pairs"] + m["validation_pairs"] + m["heldout_pairs"] == 300
    assert 40 <= m["heldout_pairs"] <= 80 and 40 <= m["validation_pairs"] <= 80
    assert m["before"]["recall@1"] < 0.2 and m["after"]["recall@1"] >= 0.9
    assert m["activation"]["activated"] is True and m["activation"]["ci"][0] > 0
    assert run.model_active and run.activation_note.startswith("activated: held-out MRR")
    adapter = adapters.active_adapter(ctx.config.data_dir, str(path))
    assert adapter is not None and adapter.run_id == run_id


def test_a_crash_mid_training_fails_the_run_and_proceed_completes(
    make_ctx: Callable[..., ServiceContext], rotated_store
) -> None:
    path, corpus, rotation = rotated_store
    ctx = make_ctx(vector_store_path=path)
    embed = RotatedQuestions(corpus, rotation, crash_first=True)
    use_engine(ctx, embed)
    runs = TrainingRunService(ctx)
    run_id = generated_run_with_pairs(ctx, 50)
    runs.start_training(run_id)
    failed = run_job(runs.ctx, run_id)
    assert failed.status is RunStatus.TRAINING_FAILED
    assert "embedding server went away" in failed.error_message
    assert adapters.active_adapter(ctx.config.data_dir, str(path)) is None
    runs.proceed(run_id)
    done = run_job(runs.ctx, run_id)
    assert done.status is RunStatus.COMPLETED
    m = done.metrics
    assert m["train_pairs"] + m["validation_pairs"] + m["heldout_pairs"] == 50


def test_a_store_too_big_for_the_memory_given_fails_the_run_before_reading_it(
    make_ctx: Callable[..., ServiceContext], rotated_store, monkeypatch
) -> None:
    """Under DMDESK_MEMORY_LIMIT_MB below what the job would need, the run ends
    training_failed with what it needs, what is free and the ways out — no OOM kill, nothing
    read, nothing embedded; with the limit lifted, Proceed completes."""
    path, corpus, rotation = rotated_store
    ctx = make_ctx(vector_store_path=path)
    embed = RotatedQuestions(corpus, rotation)
    use_engine(ctx, embed)
    runs = TrainingRunService(ctx)
    run_id = generated_run_with_pairs(ctx, 50)
    monkeypatch.setenv("DMDESK_MEMORY_LIMIT_MB", "1")
    runs.start_training(run_id)
    failed = run_job(runs.ctx, run_id)
    assert failed.status is RunStatus.TRAINING_FAILED
    message = failed.error_message
    assert "Not enough memory for training Deep Memory locally" in message
    assert "400 chunks of 32 dimensions and 50 questions" in message
    assert "left under DMDESK_MEMORY_LIMIT_MB=1" in message
    assert "DeepLake Cloud" in message and "Proceed" in message
    assert embed.calls == 0  # stopped before any question was embedded
    monkeypatch.delenv("DMDESK_MEMORY_LIMIT_MB")
    runs.proceed(run_id)
    assert run_job(runs.ctx, run_id).status is RunStatus.COMPLETED


def test_search_applies_the_active_adapter(
    make_ctx: Callable[..., ServiceContext], rotated_store, monkeypatch
) -> None:
    path, corpus, rotation = rotated_store
    ctx = make_ctx(vector_store_path=path)
    embed = RotatedQuestions(corpus, rotation)
    monkeypatch.setattr(retrieval, "_embedding", lambda _ctx: embed)
    with pytest.raises(RuleViolation, match="No Deep Memory is active"):
        retrieval.search(ctx, "question about chunk-00123?", 3, deep_memory=True)
    use_engine(ctx, embed)
    runs = TrainingRunService(ctx)
    run_id = generated_run_with_pairs(ctx)
    runs.start_training(run_id)
    assert run_job(runs.ctx, run_id).status is RunStatus.COMPLETED
    hits = retrieval.search(ctx, "question about chunk-00123?", 3, deep_memory=True)
    assert hits[0].id == "chunk-00123" and hits[0].text == "text 123"
    assert len(hits) == 3 and hits[0].score >= hits[1].score >= hits[2].score


def test_a_store_with_other_dimensions_fails_with_a_clear_message(
    make_ctx: Callable[..., ServiceContext], rotated_store
) -> None:
    path, _corpus, _rotation = rotated_store
    ctx = make_ctx(vector_store_path=path)

    def wrong_dim(texts):
        return np.ones((len(texts), 8), dtype=np.float32)

    ctx.backend_factory = lambda name, cfg: LocalEngineBackend(
        cfg.data_dir, lambda: wrong_dim, open_store
    )
    runs = TrainingRunService(ctx)
    run_id = generated_run_with_pairs(ctx, 20)
    runs.start_training(run_id)
    run = run_job(runs.ctx, run_id)
    assert run.status is RunStatus.TRAINING_FAILED
    assert "32-d" in run.error_message and "8-d" in run.error_message


def wrong_pairs_run(ctx: ServiceContext, n_pairs: int = 300) -> int:
    """Each question names one chunk but is paired with another (a consistent but random
    mapping no linear adapter can learn): training on it can only hurt."""
    run_id = insert_run(ctx, "generated", total=N)
    rng = np.random.default_rng(11)
    rows = rng.choice(N, size=n_pairs, replace=False)
    wrong = np.roll(rows, 1)
    from dmdesk.db.models import TrainingPair
    from dmdesk.db.session import session_scope

    with session_scope(ctx.sessions) as s:
        for asked, paired in zip(rows, wrong, strict=True):
            s.add(
                TrainingPair(
                    training_run_id=run_id,
                    chunk_id=f"chunk-{paired:05d}",
                    question=f"What is in chunk-{asked:05d}?",
                    approved=True,
                )
            )
    return run_id


def trained_on_wrong_pairs(make_ctx, rotated_store):
    """A completed run whose model learned wrong pairs, on a store where questions embed exactly
    like their chunk (plain search is already right)."""
    path, corpus, _rotation = rotated_store
    ctx = make_ctx(vector_store_path=path)
    use_engine(ctx, RotatedQuestions(corpus, np.eye(32)))
    runs = TrainingRunService(ctx)
    run_id = wrong_pairs_run(ctx)
    runs.start_training(run_id)
    run = run_job(runs.ctx, run_id)
    assert run.status is RunStatus.COMPLETED, run.error_message
    return ctx, run, path


def test_the_guard_refuses_a_model_trained_on_wrong_pairs(
    make_ctx: Callable[..., ServiceContext], rotated_store
) -> None:
    ctx, run, path = trained_on_wrong_pairs(make_ctx, rotated_store)
    assert run.metrics["activation"]["activated"] is False
    assert run.activation_note.startswith("not activated: no measurable gain (")
    assert not run.model_active
    assert adapters.active_adapter(ctx.config.data_dir, str(path)) is None


def test_a_new_model_must_beat_the_active_one_not_just_no_memory(
    make_ctx: Callable[..., ServiceContext], rotated_store
) -> None:
    path, corpus, rotation = rotated_store
    ctx = make_ctx(vector_store_path=path)
    use_engine(ctx, RotatedQuestions(corpus, rotation))
    runs = TrainingRunService(ctx)
    first = generated_run_with_pairs(ctx)
    runs.start_training(first)
    assert run_job(runs.ctx, first).model_active
    with ctx.engine.begin() as c:  # the first run is done; a second one with the same data
        from sqlalchemy import text

        c.execute(text("UPDATE deep_memory_training_runs SET status='completed'"))
    second = generated_run_with_pairs(ctx)
    runs.start_training(second)
    run = run_job(runs.ctx, second)
    decision = run.metrics["activation"]
    assert decision["baseline"] == f"the active model (run #{first})"
    assert decision["activated"] is False and not run.model_active
    assert adapters.active_adapter(ctx.config.data_dir, str(path)).run_id == first


def test_the_admin_switches_models_and_the_choice_survives_a_restart(
    make_ctx: Callable[..., ServiceContext], rotated_store
) -> None:
    from dmdesk.services import activation

    ctx, run, path = trained_on_wrong_pairs(make_ctx, rotated_store)
    run_id = run.id
    assert not run.model_active
    activation.activate(ctx, run)  # the admin overrides the guard
    restarted = make_ctx(vector_store_path=path)
    assert TrainingRunService(restarted).get_run(run_id).model_active
    assert activation.active_run_id(restarted) == run_id
    assert activation.deactivate(restarted) == run_id
    assert activation.active_run_id(ctx) is None
    with pytest.raises(RuleViolation, match="No Deep Memory is active"):
        retrieval.search(ctx, "anything", 3, deep_memory=True)
