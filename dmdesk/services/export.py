"""Export a run's approved pairs, so admins can train or evaluate elsewhere too (issue 10).

* `jsonl`: one line per approved pair, `{"query", "chunk_id", "pair_id"}`.
* `beir`: a BEIR folder — `corpus.jsonl` (every chunk of the run's store: `_id`, `text`),
  `queries.jsonl` (`_id` = `q<pair id>`, `text`), `qrels/train.tsv` (query-id, corpus-id, score
  1) — the format `dmdesk import` / `dmdesk evaluate` and most retrieval tools read.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from sqlalchemy import select

from dmdesk.db.models import TrainingPair
from dmdesk.db.session import session_scope
from dmdesk.domain.errors import InvalidSettings, RuleViolation
from dmdesk.services.context import ServiceContext
from dmdesk.services.runs import TrainingRunService

TEXT_BATCH = 1024


def export_pairs(ctx: ServiceContext, run_id: int, dest: Path, fmt: str) -> int:
    run = TrainingRunService(ctx).get_run(run_id)
    with session_scope(ctx.sessions) as s:
        pairs = s.execute(
            select(TrainingPair.id, TrainingPair.question, TrainingPair.chunk_id)
            .where(TrainingPair.training_run_id == run_id, TrainingPair.approved.is_(True))
            .order_by(TrainingPair.id)
        ).all()
    if not pairs:
        raise RuleViolation(f"Run #{run_id} has no approved pair to export.")
    try:
        if fmt == "jsonl":
            if dest.is_dir():
                raise InvalidSettings(f"{dest} is a folder; jsonl export writes a file.")
            dest.parent.mkdir(parents=True, exist_ok=True)
            with dest.open("w", encoding="utf-8") as f:
                for pid, question, cid in pairs:
                    f.write(json.dumps({"query": question, "chunk_id": cid, "pair_id": pid}) + "\n")
            return len(pairs)
        if fmt != "beir":
            raise InvalidSettings(f"Unknown export format {fmt!r}: use jsonl or beir.")
        if dest.exists() and not dest.is_dir():
            raise InvalidSettings(f"{dest} is a file; BEIR export writes a folder.")
        (dest / "qrels").mkdir(parents=True, exist_ok=True)
        with (dest / "queries.jsonl").open("w", encoding="utf-8") as f:
            for pid, question, _ in pairs:
                f.write(json.dumps({"_id": f"q{pid}", "text": question}) + "\n")
        with (dest / "qrels" / "train.tsv").open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(["query-id", "corpus-id", "score"])
            for pid, _, cid in pairs:
                w.writerow([f"q{pid}", cid, 1])
        store = ctx.vector_store_factory((run.settings or {}).get("vector_store_path"))
        try:
            n = store.row_count()
            ids = store.read_ids(n)
            with (dest / "corpus.jsonl").open("w", encoding="utf-8") as f:
                for start in range(0, n, TEXT_BATCH):
                    rows = list(range(start, min(n, start + TEXT_BATCH)))
                    for row, text in zip(rows, store.read_texts(rows), strict=True):
                        f.write(json.dumps({"_id": ids[row], "text": text}) + "\n")
        finally:
            store.close()
        return len(pairs)
    except OSError as exc:
        raise InvalidSettings(f"Cannot write {dest}: {exc.strerror or exc}.") from None
