"""The evaluation set of a store: real questions with their answer chunks, kept once, used by
every training run.

Validation on synthetic questions does not predict real ones (issue 25: held-out MRR rose while
recall on ~170 human questions stayed flat), so when the admin has real questions — a BEIR
queries file and qrels, or a CSV of question → chunk id — dmdesk keeps them as the store's
evaluation set: `dmdesk evaluate … --save`, or *Evaluation set…* in the window. From then on
every local training run ranks them before and after, and the activation guard's verdict rests
on them (dmdesk.deepmemory.guard.decide). DeepLake Cloud runs are judged on their held-out pairs
only: their model is reached through deeplake's search, one query at a time, and `dmdesk
evaluate` works on local stores.

The set lives beside the adapters, `<data dir>/evaluation/<hash of the store path>.json`, written
atomically; one set per store (saving again replaces it). Questions are the admin's data, not
secrets; they never leave the machine.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dmdesk.deepmemory.adapters import store_key

MAX_QUESTIONS = 20_000  # ranked exactly before and after: ~1 s per 1,000 on 100k chunks


@dataclass(frozen=True)
class EvaluationSet:
    vector_store_path: str
    source: str
    saved_at: str
    questions: list[str]
    relevant: list[list[str]]  # for each question, the ids of the chunks that answer it

    def __len__(self) -> int:
        return len(self.questions)

    def describe(self) -> str:
        return f"{len(self)} real questions from {Path(self.source).name} (saved {self.saved_at})"


@dataclass(frozen=True)
class Answerable:
    """Labelled questions mapped onto a store: those with text and at least one answer chunk in
    it, each with its answer chunks' rows and ids (chunks the store lacks are dropped)."""

    questions: list[str]
    rows: list[list[int]]
    chunk_ids: list[list[str]]


def answerable(
    questions: Sequence[str], relevant_ids: Sequence[Sequence[str]], store_ids: Sequence[str]
) -> Answerable:
    """`questions` (with `relevant_ids`, their answer chunks' ids) that the store with ids
    `store_ids` (in row order) can answer: blank questions and those without an answer chunk in
    the store are dropped. One map of ids to rows, whatever the number of questions."""
    row_of = {cid: i for i, cid in enumerate(store_ids)}
    kept = Answerable([], [], [])
    for text, rel in zip(questions, relevant_ids, strict=True):
        present = [c for c in rel if c in row_of]
        if present and text.strip():
            kept.questions.append(text)
            kept.rows.append([row_of[c] for c in present])
            kept.chunk_ids.append(present)
    return kept


def _path(data_dir: Path, store_path: str) -> Path:
    digest = hashlib.sha1(store_key(store_path).encode("utf-8")).hexdigest()[:16]
    return Path(data_dir) / "evaluation" / f"{digest}.json"


def save(
    data_dir: Path,
    store_path: str,
    questions: list[str],
    relevant: list[list[str]],
    source: str,
) -> EvaluationSet:
    """Keep `questions` (with their relevant chunk ids) as the store's evaluation set."""
    if len(questions) != len(relevant):
        raise ValueError("one list of relevant chunks per question")
    saved = EvaluationSet(
        store_key(store_path),
        source,
        datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        list(questions),
        [list(r) for r in relevant],
    )
    path = _path(data_dir, store_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    body: dict[str, Any] = {
        "vector_store_path": saved.vector_store_path,
        "source": source,
        "saved_at": saved.saved_at,
        "questions": [{"text": q, "relevant": r} for q, r in zip(questions, relevant, strict=True)],
    }
    tmp.write_text(json.dumps(body, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return saved


def load(data_dir: Path, store_path: str | None) -> EvaluationSet | None:
    """The store's evaluation set, or None (none saved, or its file cannot be read — then the
    runs are judged on held-out pairs, as without one)."""
    if not store_path:
        return None
    path = _path(data_dir, store_path)
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        items = body["questions"]
        return EvaluationSet(
            str(body["vector_store_path"]),
            str(body.get("source", "")),
            str(body.get("saved_at", "")),
            [str(o["text"]) for o in items],
            [[str(c) for c in o["relevant"]] for o in items],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove(data_dir: Path, store_path: str) -> bool:
    path = _path(data_dir, store_path)
    if path.is_file():
        path.unlink()
        return True
    return False
