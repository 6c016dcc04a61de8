"""Quality filters for generated pairs: each pair gets a verdict, flagged pairs start rejected.

Computed once generation has written every chunk's pairs, with the store's own chunk embeddings
and the configured embedding for the questions:

* **malformed** — not one question a user would type: no final "?" (unless it is a keyword query
  of two to eight words, not a sentence), no capital, under three words, or it talks about "the
  text" / "this passage" / "the following" instead of the subject;
* **round-trip** — the pair's own chunk ranks worse than `filter_roundtrip_rank` for its question
  over the whole store (Promptagator's round-trip consistency: a question that does not retrieve
  its own passage teaches the wrong thing);
* **generic** — at least `filter_generic_chunks` other chunks score within
  `filter_generic_margin` of the pair's own chunk: the question matches almost anything;
* **near-duplicate** — cosine ≥ `filter_duplicate_similarity` with an earlier question of the run.

A flagged pair's `flags` holds the reasons in words and, if the admin had not reviewed it yet,
`approved` becomes false. The admin can still approve it; "Approve all" leaves flagged pairs
alone unless asked. A failure here (say the embedding service is down) does not fail the run:
the pairs stay unflagged and the log says why.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Table, bindparam, select, update

from dmdesk.db.models import TrainingPair, TrainingRun
from dmdesk.db.session import session_scope
from dmdesk.deepmemory import blockwise, memory
from dmdesk.domain.errors import Cancelled
from dmdesk.embeddings import EmbeddingFunction, close_embedding, make_embedding, normalise
from dmdesk.llm.base import prepare_model
from dmdesk.llm.prompt import REFERS_TO_PASSAGE
from dmdesk.services.context import ServiceContext

log = logging.getLogger(__name__)

DUPLICATE_BLOCK = 512  # questions compared with the earlier ones at once (512 × n scores)
EMBED_BATCH = 256


@dataclass(frozen=True)
class Thresholds:
    roundtrip_rank: int = 10
    generic_chunks: int = 10
    generic_margin: float = 0.01
    duplicate_similarity: float = 0.97


# A keyword query (the third style the prompt asks for, dmdesk.llm.prompt.STYLES): a few words
# and no sentence. A statement ("The GIL is released.", "Debian is free") is not one.
_KEYWORD_WORDS = (2, 8)
_SENTENCE_VERB = re.compile(r"\b(is|are|was|were|be|been|has|have|had)\b", re.I)


def malformed(question: str) -> str | None:
    q = question.strip()
    if REFERS_TO_PASSAGE.search(q):
        return "malformed: refers to the passage, not its subject"
    if not q.endswith("?"):
        low, high = _KEYWORD_WORDS
        words = q.split()
        sentence = q.endswith((".", "!", ":")) or _SENTENCE_VERB.search(q)
        if low <= len(words) <= high and not sentence:
            return None  # a keyword query
        return "malformed: not a question"
    if not q[:1].isupper():
        return "malformed: starts mid-sentence"
    if len(q.split()) < 3:
        return "malformed: too short"
    return None


def assess(
    questions: Sequence[str],
    own_rows: Sequence[int],
    q_emb: NDArray[np.float32],
    corpus: NDArray[np.float32],
    t: Thresholds,
    cancel: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[str | None]:
    """The flags of each pair (None = nothing found), from normalised embeddings. The store is
    scored tile by tile (dmdesk.deepmemory.blockwise): memory is one tile, not questions ×
    chunks; `progress(done, total)` follows the questions scored."""
    reasons: list[list[str]] = [[] for _ in questions]
    for i, q in enumerate(questions):
        bad = malformed(q)
        if bad:
            reasons[i].append(bad)
    own = np.asarray(own_rows, dtype=np.int64)
    if len(own):
        own_scores = np.einsum("ij,ij->i", q_emb, corpus[own]).astype(np.float32)
        above, close = blockwise.count_beating(
            q_emb,
            corpus,
            [(own_scores, True), (own_scores - np.float32(t.generic_margin), False)],
            exclude=own,
            cancel=cancel,
            progress=progress,
        )
        ranks = 1 + above
        for i in range(len(questions)):
            if t.roundtrip_rank and ranks[i] > t.roundtrip_rank:
                reasons[i].append(f"round-trip: its chunk ranks {int(ranks[i])}")
            if t.generic_chunks and close[i] >= t.generic_chunks:
                reasons[i].append(f"generic: {int(close[i])} chunks match about as well")
    for start in range(0, len(questions), DUPLICATE_BLOCK):  # each question × the earlier ones
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        stop = min(start + DUPLICATE_BLOCK, len(questions))
        dup = q_emb[start:stop] @ q_emb[:stop].T
        for j in range(stop - start):
            i = start + j
            earlier = dup[j, :i]
            if len(earlier) and earlier.max() >= t.duplicate_similarity:
                reasons[i].append("near-duplicate of an earlier question")
    return ["; ".join(r)[:300] if r else None for r in reasons]


def thresholds_of(ctx: ServiceContext) -> Thresholds:
    c = ctx.config
    return Thresholds(
        roundtrip_rank=c.filter_roundtrip_rank,
        generic_chunks=c.filter_generic_chunks,
        generic_margin=c.filter_generic_margin,
        duplicate_similarity=c.filter_duplicate_similarity,
    )


def _embed_run(
    ctx: ServiceContext,
    store_path: str | None,
    rows: Sequence[tuple[int, str, str]],
    embed: EmbeddingFunction,
    say: Callable[[str], None],
    cancel: threading.Event | None,
) -> tuple[NDArray[np.float32], NDArray[np.float32], list[tuple[int, int, str]]]:
    """Normalised question and chunk embeddings, and the pairs whose chunk is in the store as
    (pair id, chunk row, question)."""
    store = ctx.vector_store_factory(store_path)
    try:
        dim = store.embedding_dim()
        if dim is not None:
            memory.check_fits("checking question quality", store.row_count(), dim, len(rows))
        say("Checking question quality: reading the store's embeddings")
        ids, corpus = store.corpus_embeddings(embed)
    finally:
        store.close()
    row_of = {cid: i for i, cid in enumerate(ids)}
    kept = [(pid, row_of[cid], q) for pid, cid, q in rows if cid in row_of]
    questions = [q for _, _, q in kept]
    prepare_model(embed, lambda what: say(f"Checking question quality: {what}"))
    vectors: list[NDArray[np.float32]] = []
    for start in range(0, len(questions), EMBED_BATCH):
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        say(f"Checking question quality: {start}/{len(questions)} questions embedded")
        vectors.append(np.asarray(embed(questions[start : start + EMBED_BATCH])))
    q_emb = normalise(np.concatenate(vectors))
    if q_emb.shape[1] != corpus.shape[1]:
        raise ValueError(
            f"question embeddings are {q_emb.shape[1]}-d, the store's {corpus.shape[1]}-d"
        )
    return q_emb, corpus, kept


def assess_run(
    ctx: ServiceContext,
    run_id: int,
    progress: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
    embedding: EmbeddingFunction | None = None,
) -> dict[str, int]:
    """Flag the run's pairs; returns counts. Flagged pairs not reviewed yet become rejected."""
    say = progress or (lambda _m: None)
    with session_scope(ctx.sessions) as s:
        run = s.get(TrainingRun, run_id)
        store_path = run.settings.vector_store_path if run and run.settings else None
        rows = s.execute(
            select(TrainingPair.id, TrainingPair.chunk_id, TrainingPair.question)
            .where(TrainingPair.training_run_id == run_id)
            .order_by(TrainingPair.id)
        ).all()
    if not rows:
        return {"pairs": 0, "flagged": 0}
    embed = embedding or make_embedding(ctx.config.embedding, base_url=ctx.config.llm_base_url)
    try:
        q_emb, corpus, kept = _embed_run(ctx, store_path, rows, embed, say, cancel)
    finally:
        if embedding is None:
            close_embedding(embed)
    questions = [q for _, _, q in kept]
    flags = assess(
        questions,
        [r for _, r, _ in kept],
        q_emb,
        corpus,
        thresholds_of(ctx),
        cancel,
        lambda done, total: say(
            f"Checking question quality: {done:,}/{total:,} questions scored against "
            f"{len(corpus):,} chunks"
        ),
    )
    table: Table = TrainingPair.__table__  # type: ignore[assignment]
    with session_scope(ctx.sessions) as s:
        s.connection().execute(  # one executemany, not a statement per pair
            update(table).where(table.c.id == bindparam("pid")).values(flags=bindparam("f")),
            [{"pid": pid, "f": f} for (pid, _, _), f in zip(kept, flags, strict=True)],
        )
        s.execute(
            update(TrainingPair)
            .where(
                TrainingPair.training_run_id == run_id,
                TrainingPair.flags.is_not(None),
                TrainingPair.approved.is_(None),
            )
            .values(approved=False)
            .execution_options(synchronize_session=False)
        )
    flagged = sum(f is not None for f in flags)
    log.info("run %s: quality filters flagged %d of %d pairs", run_id, flagged, len(flags))
    return {"pairs": len(flags), "flagged": flagged}
