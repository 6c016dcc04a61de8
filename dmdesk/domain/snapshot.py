"""What a run was started with (its settings snapshot) and what it records while it works.

The snapshot is written once, when generation starts (:meth:`RunSnapshot.start`), so a run resumed
days later by Proceed generates the same questions from the same chunks whatever the live
configuration says now. Proceed amends it with `model_copy` (:meth:`RunSnapshot.reconnected`:
how to reach the LLM is taken from the settings again); a run from a database that kept no
snapshot, or only part of one, is completed by one constructor (:meth:`RunSnapshot.completed`).

Every value in a snapshot comes from the configuration: the snapshot itself has no defaults for
what the configuration decides. A field is None only when the run was recorded before dmdesk
kept it (a ZIP-004 run, an early dmdesk's run); `completed` fills those from the configuration,
and a job refuses a snapshot that still lacks what it needs (:meth:`RunSnapshot.need`) rather
than guessing. Stored through :class:`dmdesk.db.models.SnapshotJSON`, one JSON column type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from dmdesk.domain.errors import DmdeskError

# The state of a Batch API batch recorded on a run (`dmdesk.jobs.batch`): open until its answers
# are written as pairs.
OPEN, WRITTEN = "open", "written"

T = TypeVar("T")


class SnapshotSettings(Protocol):
    """What a snapshot takes from the configuration (`dmdesk.config.DmdeskConfig` has it all)."""

    vector_store_path: str | None
    questions_per_chunk: int
    llm_model: str
    llm_base_url: str | None
    generation_concurrency: int
    llm_mode: Literal["online", "batch"]
    deep_memory_backend: Literal["deeplake", "local"]
    embedding: str


class Selection(BaseModel):
    """The run's chunks: rows [0, rows) of the store as it was at start."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    rows: int
    # Distinct chunk ids among those rows (rows that repeat an id are one chunk); None: a run
    # recorded before dmdesk counted them, when every row was its own chunk.
    chunks: int | None = None
    # A run limited by `chunk_limit` says so: "40 of 1,234 chunks (chunk_limit)".
    store_rows: int | None = None
    limited_by: str | None = None

    @property
    def chunk_count(self) -> int:
        return self.chunks if self.chunks is not None else self.rows


class RunSnapshot(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    # What defines the run's data set: kept for the run's whole life.
    vector_store_path: str | None = None
    selection: Selection | None = None
    questions_per_chunk: int | None = None
    deep_memory_backend: Literal["deeplake", "local"] | None = None
    embedding: str | None = None
    # How to reach the LLM: taken from the settings again on every generation Proceed.
    llm_model: str | None = None
    llm_base_url: str | None = None
    generation_concurrency: int | None = None
    llm_mode: Literal["online", "batch"] | None = None
    # What the run records while it works.
    resume_row: int | None = None  # every row below it is known processed (a resume hint)
    batches: tuple[dict[str, Any], ...] = ()  # Batch API batches (`dmdesk.jobs.batch`)
    attach_job_id: str | None = None  # a DeepLake job to re-attach to (stale recovery)

    # -- the constructors ----------------------------------------------------------------------

    @classmethod
    def start(cls, cfg: SnapshotSettings, selection: Selection) -> RunSnapshot:
        """A new run's snapshot: everything from the configuration as it is now."""
        return cls.model_validate(_kept(cfg) | {"selection": selection}).reconnected(cfg)

    def completed(
        self, cfg: SnapshotSettings, select: Callable[[str | None], Selection]
    ) -> RunSnapshot:
        """A legacy run's snapshot made whole: what defines its data set and was not recorded
        is taken from the configuration, its chunk selection from the store as it is now
        (`select(vector_store_path)`). Recorded by Proceed, so the run's next resume works on
        the same set."""
        snapshot = self.model_copy(
            update={k: v for k, v in _kept(cfg).items() if getattr(self, k) is None}
        )
        if snapshot.selection is None:
            snapshot = snapshot.model_copy(update={"selection": select(snapshot.vector_store_path)})
        return snapshot

    def reconnected(self, cfg: SnapshotSettings) -> RunSnapshot:
        """How to reach the LLM from the settings as they are now (a generation Proceed: fixing
        a wrong model name and proceeding works)."""
        return self.model_copy(
            update={
                "llm_model": cfg.llm_model,
                "llm_base_url": cfg.llm_base_url,
                "generation_concurrency": cfg.generation_concurrency,
                "llm_mode": cfg.llm_mode,
            }
        )

    @classmethod
    def from_record(cls, raw: Mapping[str, Any] | None) -> RunSnapshot | None:
        """The snapshot a row holds. A record that cannot be read as one (garbage written by
        hand) keeps the fields that can be read; Proceed completes the rest from the settings."""
        if raw is None:
            return None
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
            return cls.model_validate({k: v for k, v in raw.items() if k not in bad})

    def to_record(self) -> dict[str, Any]:
        """What the JSON column holds: the recorded values only."""
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=True)

    # -- reading -------------------------------------------------------------------------------

    def need(self, value: T | None, what: str) -> T:
        """A value a job cannot run without; a snapshot that lacks it is refused, not guessed."""
        if value is None:
            raise DmdeskError(
                f"This run's settings snapshot records no {what}; remove the run and start again."
            )
        return value

    @property
    def open_batches(self) -> list[dict[str, Any]]:
        """The batches recorded on the run that have not been written yet."""
        return [b for b in self.batches if b.get("state") == OPEN]


def _kept(cfg: SnapshotSettings) -> dict[str, Any]:
    """What defines a run's data set, from the configuration."""
    return {
        "vector_store_path": cfg.vector_store_path,
        "questions_per_chunk": cfg.questions_per_chunk,
        "deep_memory_backend": cfg.deep_memory_backend,
        "embedding": cfg.embedding,
    }


def open_batches(snapshot: RunSnapshot | None) -> list[dict[str, Any]]:
    """The batches recorded on a run that have not been written yet (none without a snapshot)."""
    return snapshot.open_batches if snapshot is not None else []
