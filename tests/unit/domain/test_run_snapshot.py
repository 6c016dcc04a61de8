"""A run's settings snapshot (issue 24): typed, frozen, every value from the configuration,
stored through one JSON column type, completed from the settings for a legacy run."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from dmdesk.config import DmdeskConfig
from dmdesk.db.models import Base, TrainingRun, utcnow
from dmdesk.domain.errors import DmdeskError
from dmdesk.domain.snapshot import OPEN, WRITTEN, RunSnapshot, Selection, open_batches


def _cfg(**values: Any) -> DmdeskConfig:
    base: dict[str, Any] = {
        "vector_store_path": "/stores/kb",
        "questions_per_chunk": 3,
        "llm_model": "gpt-4o-mini",
        "llm_base_url": "http://127.0.0.1:9/v1",
        "generation_concurrency": 5,
        "llm_mode": "online",
        "deep_memory_backend": "local",
        "embedding": "local:minilm",
    }
    return DmdeskConfig.model_construct(**(base | values))


def test_a_new_snapshot_takes_every_value_from_the_configuration() -> None:
    snap = RunSnapshot.start(_cfg(), Selection(rows=40, chunks=38))
    assert snap.to_record() == {
        "vector_store_path": "/stores/kb",
        "selection": {"rows": 40, "chunks": 38},
        "questions_per_chunk": 3,
        "deep_memory_backend": "local",
        "embedding": "local:minilm",
        "llm_model": "gpt-4o-mini",
        "llm_base_url": "http://127.0.0.1:9/v1",
        "generation_concurrency": 5,
        "llm_mode": "online",
    }
    with pytest.raises(ValidationError):
        snap.questions_per_chunk = 4  # type: ignore[misc]  # frozen


def test_proceed_reconnects_with_the_settings_of_now_and_keeps_the_data_set() -> None:
    started = RunSnapshot.start(_cfg(), Selection(rows=40))
    later = started.reconnected(
        _cfg(llm_model="fixed-model", generation_concurrency=2, questions_per_chunk=9)
    )
    assert (later.llm_model, later.generation_concurrency) == ("fixed-model", 2)
    assert later.questions_per_chunk == 3 and later.selection == started.selection
    assert started.llm_model == "gpt-4o-mini"  # a copy: the original is unchanged


def test_a_legacy_snapshot_is_completed_from_the_configuration_and_keeps_what_it_recorded() -> None:
    selected: list[str | None] = []

    def select(path: str | None) -> Selection:
        selected.append(path)
        return Selection(rows=7, chunks=6)

    partial = RunSnapshot.from_record({"vector_store_path": "/stores/old", "resume_row": 4})
    assert partial is not None
    whole = partial.completed(_cfg(), select)
    assert whole.vector_store_path == "/stores/old" and whole.resume_row == 4
    assert (whole.questions_per_chunk, whole.deep_memory_backend) == (3, "local")
    assert whole.selection == Selection(rows=7, chunks=6) and selected == ["/stores/old"]
    # how to reach the LLM is not part of the data set: a generation Proceed reconnects it
    assert whole.llm_model is None
    none_at_all = RunSnapshot().completed(_cfg(), select)
    assert none_at_all.vector_store_path == "/stores/kb"


def test_a_job_refuses_what_a_snapshot_does_not_record_instead_of_guessing() -> None:
    snap = RunSnapshot()
    with pytest.raises(DmdeskError, match="records no generation concurrency"):
        snap.need(snap.generation_concurrency, "generation concurrency")
    assert Selection(rows=5).chunk_count == 5  # recorded before chunks were counted


def test_a_record_with_a_bad_field_keeps_the_fields_that_can_be_read() -> None:
    snap = RunSnapshot.from_record(
        {"vector_store_path": "/stores/kb", "questions_per_chunk": "many", "future_key": 1}
    )
    assert snap is not None
    assert snap.vector_store_path == "/stores/kb" and snap.questions_per_chunk is None
    assert RunSnapshot.from_record(None) is None


def test_open_batches_are_the_ones_not_written_yet() -> None:
    snap = RunSnapshot(batches=({"id": "b1", "state": OPEN}, {"id": "b2", "state": WRITTEN}))
    assert [b["id"] for b in open_batches(snap)] == ["b1"] and open_batches(None) == []


def test_the_column_stores_the_record_and_reads_a_snapshot_back_legacy_rows_too() -> None:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    now = utcnow()
    snap = RunSnapshot.start(_cfg(), Selection(rows=3, chunks=3))
    with Session(engine) as s:
        for settings in (snap, {"vector_store_path": "/stores/old"}, None):
            s.add(
                TrainingRun(
                    status="generating_failed",
                    settings=settings,
                    created_at=now,
                    updated_at=now,
                )
            )
        s.commit()
        raw = s.execute(text("SELECT settings FROM deep_memory_training_runs ORDER BY id")).all()
        assert json.loads(raw[0][0]) == snap.to_record()  # the record: values only
        [new, legacy, none] = s.query(TrainingRun).order_by(TrainingRun.id).all()
    assert new.settings == snap
    assert legacy.settings == RunSnapshot(vector_store_path="/stores/old")
    assert none.settings is None
