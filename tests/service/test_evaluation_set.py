"""Issue 25: the store's evaluation set of real questions judges every local training run.

The rotated problem (tests/service/test_training_local.py): questions embed as R·c, so a model
that learns R⁻¹ is clearly better on the held-out synthetic pairs. A hand-built evaluation set
whose answers are the chunks plain search already ranks first for those questions is one the
model makes worse: the guard refuses it, although the held-out pairs alone would activate it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dmdesk.deepmemory import adapters, evalset
from dmdesk.domain.errors import InvalidSettings
from dmdesk.domain.status import RunStatus
from dmdesk.jobs.runner import run_job
from dmdesk.services import retrieval
from dmdesk.services.context import ServiceContext
from dmdesk.services.runs import TrainingRunService
from tests.service.test_training_local import (
    RotatedQuestions,
    generated_run_with_pairs,
    rotated_store,
    use_engine,
)

EVAL_CHUNKS = range(0, 400, 8)  # 50 real questions
__all__ = ["rotated_store"]  # a fixture, shared


def real_questions() -> list[str]:
    return [f"how do I use chunk-{i:05d}?" for i in EVAL_CHUNKS]


def trained(
    make_ctx: Callable[..., ServiceContext], rotated_store, answers: list[list[str]] | None
):
    """A completed local run on the rotated store; `answers` (per real question) saves an
    evaluation set first, None trains without one."""
    path, corpus, rotation = rotated_store
    ctx = make_ctx(vector_store_path=path)
    use_engine(ctx, RotatedQuestions(corpus, rotation))
    if answers is not None:
        evalset.save(ctx.config.data_dir, str(path), real_questions(), answers, "real.csv")
    runs = TrainingRunService(ctx)
    run_id = generated_run_with_pairs(ctx)
    runs.start_training(run_id)
    run = run_job(runs.ctx, run_id)
    assert run.status is RunStatus.COMPLETED, run.error_message
    return ctx, run, path


def test_a_model_worse_on_the_evaluation_set_is_refused_though_better_on_held_out_pairs(
    make_ctx: Callable[..., ServiceContext], rotated_store
) -> None:
    _path, corpus, rotation = rotated_store
    plain = RotatedQuestions(corpus, rotation)(real_questions()) @ corpus.T
    own = np.array(list(EVAL_CHUNKS))
    plain[np.arange(len(own)), own] = -np.inf  # the answer is another chunk: plain search's top
    answers = [[f"chunk-{int(i):05d}"] for i in plain.argmax(axis=1)]
    ctx, run, path = trained(make_ctx, rotated_store, answers)
    decision = run.metrics["activation"]
    assert decision["ci"][0] > 0  # held-out synthetic pairs: a clear gain…
    assert decision["activated"] is False  # …refused on the real questions
    assert run.activation_note.startswith("not activated: worse on the evaluation set (MRR")
    assert decision["judged_on"] == "real questions (the evaluation set)"
    assert run.metrics["evaluation_set"]["questions"] == 50
    assert run.metrics["evaluation_set"]["before"]["recall@1"] == 1.0
    assert not run.model_active
    assert adapters.active_adapter(ctx.config.data_dir, str(path)) is None


def test_a_model_better_on_the_evaluation_set_is_activated_and_says_so(
    make_ctx: Callable[..., ServiceContext], rotated_store
) -> None:
    answers = [[f"chunk-{i:05d}"] for i in EVAL_CHUNKS]
    _ctx, run, _path = trained(make_ctx, rotated_store, answers)
    decision = run.metrics["activation"]
    assert decision["activated"] is True and run.model_active
    assert decision["evaluation"]["mrr_new"] > decision["evaluation"]["mrr_baseline"]
    assert decision["evaluation"]["ci"][0] > 0
    assert "evaluation set (50 real questions)" in run.activation_note
    evaluation_ranks = run.metrics["evaluation_ranks"]
    assert len(evaluation_ranks["before"]) == len(evaluation_ranks["after"]) == 50


def test_without_an_evaluation_set_the_verdict_says_it_rests_on_synthetic_questions(
    make_ctx: Callable[..., ServiceContext], rotated_store
) -> None:
    _ctx, run, _path = trained(make_ctx, rotated_store, None)
    assert run.metrics["activation"]["judged_on"] == "synthetic questions"
    assert "evaluation_ranks" not in run.metrics


def test_the_evaluation_set_is_kept_per_store_and_survives_a_broken_file(tmp_path: Path) -> None:
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    saved = evalset.save(tmp_path, a, ["how do I x?"], [["c1", "c2"]], "/data/real.csv")
    assert evalset.load(tmp_path, a) == saved and evalset.load(tmp_path, b) is None
    assert saved.describe().startswith("1 real questions from real.csv (saved ")
    for f in (tmp_path / "evaluation").iterdir():
        f.write_text("{not json")
    assert evalset.load(tmp_path, a) is None  # judged on held-out pairs, as without one
    assert evalset.remove(tmp_path, a) and not evalset.remove(tmp_path, a)


def test_a_question_csv_reads_with_or_without_a_header_and_says_what_is_wrong(
    tmp_path: Path,
) -> None:
    f = tmp_path / "q.csv"
    f.write_text(
        'question,chunk_id\nhow do I x?,c1\n"what, exactly, is y?",c2\nhow do I x?,c3\n',
        encoding="utf-8",
    )
    assert retrieval.read_question_csv(f) == (
        ["how do I x?", "what, exactly, is y?"],
        [["c1", "c3"], ["c2"]],
    )
    f.write_text("how do I x?,c1\n", encoding="utf-8")
    assert retrieval.read_question_csv(f) == (["how do I x?"], [["c1"]])
    f.write_text("how do I x?,c1\nno chunk id\n", encoding="utf-8")
    with pytest.raises(InvalidSettings, match=r"q.csv:2 needs a question and a chunk id"):
        retrieval.read_question_csv(f)
    f.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InvalidSettings, match="is not UTF-8 text"):
        retrieval.read_question_csv(f)
    with pytest.raises(InvalidSettings, match="does not exist"):
        retrieval.read_question_csv(tmp_path / "nope.csv")
