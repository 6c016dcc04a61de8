"""Quality filters on a hand-built store whose geometry is known: a generic question, a
near-duplicate, a round-trip failure and a malformed one are flagged with their reasons and start
rejected; a good question is not flagged. Then review: "Approve all" leaves flagged pairs and the
admin's rejections alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dmdesk.embeddings import normalise
from dmdesk.jobs.runner import run_job
from dmdesk.services import quality
from dmdesk.services.context import ServiceContext
from dmdesk.services.runs import TrainingRunService
from dmdesk.vectorstore.service import create_local_store
from tests.helpers import insert_run

D = 16
N = 40


@pytest.fixture
def world(tmp_path: Path, make_ctx: Callable[..., ServiceContext]):
    rng = np.random.default_rng(3)
    corpus = normalise(rng.normal(size=(N, D)))
    corpus[1:12] = normalise(corpus[0] + 1e-4 * rng.normal(size=(11, D)))  # a cluster of 12
    ids = [f"c{i:02d}" for i in range(N)]
    path = tmp_path / "store"
    create_local_store(path, ids, [f"text {i}" for i in range(N)], embeddings=corpus)
    ctx = make_ctx(vector_store_path=path, quality_filters=True)
    vectors = {
        "What does the c20 option control?": corpus[20] + 0.01,  # good
        "Which flag does c21 set?": corpus[21],  # good
        "Which setting is shared by the cluster?": corpus[0],  # generic: 11 chunks as close
        "Why would anyone read c22?": -corpus[22],  # round-trip: its chunk ranks last
        "How is c23 configured?": corpus[23],
        "How do I configure c23?": corpus[23] + 1e-3,  # near-duplicate of the one above
        "what is it": corpus[24],  # malformed
    }
    pairs = [
        ("What does the c20 option control?", "c20"),
        ("Which flag does c21 set?", "c21"),
        ("Which setting is shared by the cluster?", "c00"),
        ("Why would anyone read c22?", "c22"),
        ("How is c23 configured?", "c23"),
        ("How do I configure c23?", "c24"),
        ("what is it", "c24"),
    ]
    run_id = insert_run(ctx, "generated", total=N)
    from dmdesk.db.models import TrainingPair
    from dmdesk.db.session import session_scope

    with session_scope(ctx.sessions) as s:
        for q, cid in pairs:
            s.add(TrainingPair(training_run_id=run_id, chunk_id=cid, question=q))

    def embed(texts):
        return normalise(np.asarray([vectors[t] for t in texts], dtype=np.float32))

    return ctx, run_id, embed


def flags_by_question(ctx: ServiceContext, run_id: int) -> dict[str, tuple[str | None, bool]]:
    return {p.question: (p.flags, p.approved) for p in TrainingRunService(ctx).list_pairs(run_id)}


def test_filters_flag_generic_duplicate_roundtrip_and_malformed_pairs(world) -> None:
    ctx, run_id, embed = world
    counts = quality.assess_run(ctx, run_id, embedding=embed)
    got = flags_by_question(ctx, run_id)
    assert got["What does the c20 option control?"] == (None, None)
    assert got["Which flag does c21 set?"] == (None, None)
    assert (
        "generic: 11 chunks match about as well"
        in got["Which setting is shared by the cluster?"][0]
    )
    assert "round-trip: its chunk ranks 40" in got["Why would anyone read c22?"][0]
    assert got["How is c23 configured?"][0] is None
    assert "near-duplicate" in got["How do I configure c23?"][0]
    assert got["what is it"][0].startswith("malformed")
    flagged = [q for q, (f, _) in got.items() if f]
    assert all(got[q][1] is False for q in flagged)  # flagged pairs start rejected
    assert counts == {"pairs": 7, "flagged": 4}


def test_approve_all_approves_only_unflagged_pairs_and_never_overrides_a_rejection(world) -> None:
    ctx, run_id, embed = world
    quality.assess_run(ctx, run_id, embedding=embed)
    runs = TrainingRunService(ctx)
    pairs = {p.question: p.id for p in runs.list_pairs(run_id)}
    runs.set_approval(run_id, [pairs["Which flag does c21 set?"]], False)  # the admin says no
    assert runs.approve_all(run_id) == 2  # c20 and c23
    got = flags_by_question(ctx, run_id)
    assert got["Which flag does c21 set?"][1] is False
    assert got["What does the c20 option control?"][1] is True
    assert runs.review_counts(run_id) == {
        "approved": 2,
        "rejected": 5,
        "flagged": 4,
        "unreviewed": 0,
    }
    assert runs.approve_all(run_id, include_flagged=True) == 4
    assert flags_by_question(ctx, run_id)["Which flag does c21 set?"][1] is False


def test_a_filter_failure_leaves_the_run_generated_and_unflagged(
    make_ctx: Callable[..., ServiceContext], store200, llm_server
) -> None:
    """The embedding server is down when the filters run: generation still succeeds."""
    from dmdesk.domain.status import RunStatus

    ctx = make_ctx(vector_store_path=store200, quality_filters=True, chunk_limit=5)
    runs = TrainingRunService(ctx)
    run = runs.start_generation()

    def break_embeddings(update) -> None:
        if update.processed == update.total:
            llm_server.configure(embeddings_status=503)

    done = run_job(runs.ctx, run.id, break_embeddings)
    assert done.status is RunStatus.GENERATED
    assert all(p.flags is None and p.approved is None for p in runs.list_pairs(run.id))


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("install package offline", None),  # a keyword query, the prompt's third style
        ("apt-get pin release", None),
        ("How do I pin a package?", None),
        ("what is it", "malformed: not a question"),  # a sentence without its "?"
        ("The GIL is released.", "malformed: not a question"),
        ("debian", "malformed: not a question"),  # one word: neither
        ("how do I pin a package?", "malformed: starts mid-sentence"),
        ("passage keywords", None),
        ("the following text keywords", "malformed: refers to the passage, not its subject"),
    ],
)
def test_keyword_queries_are_not_malformed_but_sentences_are(
    text: str, verdict: str | None
) -> None:
    assert quality.malformed(text) == verdict
