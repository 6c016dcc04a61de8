"""Export a run's approved pairs, so admins can train or evaluate elsewhere too (issue 10).

* `jsonl`: one line per approved pair, `{"query", "chunk_id", "pair_id"}`.
* `beir`: a BEIR folder — `corpus.jsonl` (every chunk of the run's store: `_id`, `text`),
  `queries.jsonl` (`_id` = `q<pair id>`, `text`), `qrels/train.tsv` (query-id, corpus-id, score
  1) — the format `dmdesk import` / `dmdesk evaluate` and most retrieval tools read.

:func:`export_model` writes a completed local run's Deep Memory model for the admin's own
application (dmdesk.deepmemory.export: a sentence-transformers folder, or the transform as
safetensors). A DeepLake Cloud run's model lives on DeepLake: its application uses
`VectorStore.search(..., deep_memory=True)` and there is nothing to export.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from sqlalchemy import select

from dmdesk.db.models import TrainingPair
from dmdesk.db.session import session_scope
from dmdesk.deepmemory import adapters
from dmdesk.deepmemory import export as model_export
from dmdesk.domain.errors import InvalidSettings, RuleViolation
from dmdesk.domain.status import RunStatus
from dmdesk.services.context import ServiceContext
from dmdesk.services.runs import TrainingRunService

TEXT_BATCH = 1024
PAIR_FORMATS = ("jsonl", "beir")
FORMATS = (*PAIR_FORMATS, *model_export.FORMATS)


def export(ctx: ServiceContext, run_id: int, dest: Path, fmt: str) -> str:
    """Export a run in `fmt` (FORMATS); returns what was written, in words."""
    if fmt in model_export.FORMATS:
        export_model(ctx, run_id, dest, fmt)
        return f"Wrote run #{run_id}'s Deep Memory model to {dest} ({fmt})."
    n = export_pairs(ctx, run_id, dest, fmt)
    return f"Wrote {n} approved pairs of run #{run_id} to {dest} ({fmt})."


def model_format_for(ctx: ServiceContext, run_id: int) -> str:
    """The richest model format a run's store allows: a sentence-transformers folder for a
    store embedded locally, the transform alone for one embedded by an API model."""
    adapter = adapters.load_adapter(ctx.config.data_dir, run_id)
    if adapter is not None and adapter.embedding == "local":
        return model_export.SENTENCE_TRANSFORMERS
    return model_export.TRANSFORM


def export_model(ctx: ServiceContext, run_id: int, dest: Path, fmt: str) -> Path:
    """Write run `run_id`'s local Deep Memory model to the folder `dest`."""
    run = TrainingRunService(ctx).get_run(run_id)
    if run.status is not RunStatus.COMPLETED:
        raise RuleViolation(
            f"Run #{run_id} is {run.status.value}: only a completed run has a model to export."
        )
    backend = (run.metrics or {}).get("backend")
    if backend != "local":
        raise RuleViolation(
            f"Run #{run_id} was trained on DeepLake Cloud: its model lives on DeepLake, and your "
            "application uses it with VectorStore.search(..., deep_memory=True) (README, "
            '"Using Deep Memory in your application"). Only local-engine models are exported.'
        )
    adapter = adapters.load_adapter(ctx.config.data_dir, run_id)
    if adapter is None:
        raise RuleViolation(
            f"Run #{run_id}'s model file is missing from {ctx.config.data_dir / 'adapters'}: "
            f"train the run again (dmdesk train {run_id}) to export it."
        )
    decision = (run.metrics or {}).get("activation") or {}
    facts = model_export.ModelFacts(
        run_id=run_id,
        store=adapter.vector_store_path,
        embedding=adapter.embedding,
        metrics=run.metrics or {},
        guard=run.activation_note or str(decision.get("reason") or ""),
        in_use=run.model_active,
    )
    return model_export.write_model(Path(dest), adapter.matrix, facts, fmt)


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
            raise InvalidSettings(f"Unknown export format {fmt!r}: use {', '.join(FORMATS)}.")
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
        store = ctx.vector_store_factory(run.store_path)
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
