"""DTOs that cross the service boundary: plain pydantic objects, never ORM rows or Qt types."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_serializer

from dmdesk.domain.errors import STOPPED_BY_ADMIN
from dmdesk.domain.snapshot import RunSnapshot
from dmdesk.domain.status import FAILED, RunStatus, progress_text


def describe_usage(prompt: int, completion: int, cost: float | None) -> str | None:
    """Tokens and their cost in words ("12,345 tokens in, 2,345 out — $0.0042"); None for none.
    An unknown price shows the tokens alone."""
    if not (prompt or completion):
        return None
    text = f"{prompt:,} tokens in, {completion:,} out"
    if cost is not None:
        text += f" — ${cost:.4f}" if cost < 1 else f" — ${cost:,.2f}"
    return text


class RunView(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    status: RunStatus
    total_chunks: int
    processed_chunks: int
    pair_count: int
    error_message: str | None
    deeplake_job_id: str | None
    metrics: dict[str, Any] | None
    settings: RunSnapshot | None
    created_at: datetime
    updated_at: datetime
    heartbeat_at: datetime | None
    approved_count: int = 0
    # This run's model is the one dmdesk's search uses for its store.
    model_active: bool = False
    # The LLM's `usage` summed over the run's calls, and what it cost (None: unknown price).
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None

    @field_serializer("settings")
    def _settings_record(self, snapshot: RunSnapshot | None) -> dict[str, Any] | None:
        """JSON (`dmdesk runs --json`) shows the snapshot as it is recorded: its values only."""
        return snapshot.to_record() if snapshot is not None else None

    @property
    def store_path(self) -> str | None:
        """The vector store the run was made from (its snapshot's)."""
        return self.settings.vector_store_path if self.settings else None

    @property
    def usage_text(self) -> str | None:
        """ "12,345 tokens in, 2,345 out — $0.0042", or None before any LLM call."""
        return describe_usage(self.prompt_tokens, self.completion_tokens, self.cost_usd)

    @property
    def activation_note(self) -> str | None:
        """The guard's verdict on a completed run, in words."""
        decision = (self.metrics or {}).get("activation")
        return decision.get("reason") if isinstance(decision, dict) else None

    @property
    def is_failed(self) -> bool:
        return self.status in FAILED

    @property
    def stopped_by_admin(self) -> bool:
        """A failed run the administrator stopped (Stop, or closing the window): a fact to
        show plainly, not an alarm. Its status stays failed, so that Proceed continues it."""
        return self.status in FAILED and STOPPED_BY_ADMIN in (self.error_message or "")

    @property
    def removable(self) -> bool:
        """Delete is offered for failed runs (FR-5) and — our decision where the spec is silent —
        for a generated run without any approved pair, which could otherwise never move on."""
        return self.status in FAILED or (
            self.status is RunStatus.GENERATED and self.approved_count == 0
        )

    @property
    def progress_text(self) -> str:
        return progress_text(self.status, self.processed_chunks, self.total_chunks)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class PairView(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    training_run_id: int
    chunk_id: str
    question: str
    approved: bool | None
    created_at: datetime
    flags: str | None = None


class ProgressUpdate(BaseModel):
    """What a job reports through its plain callback (the GUI turns it into a Qt signal)."""

    model_config = ConfigDict(frozen=True)

    run_id: int
    phase: Literal["generation", "training"]
    processed: int
    total: int
    pair_count: int = 0
    message: str = ""


ProgressCallback = Callable[[ProgressUpdate], None]


class DeepMemorySettingsResponse(BaseModel):
    """DESIGN.md contract: the Deep Memory settings plus is_cloud, backend and availability."""

    llm_model: str
    llm_base_url: str | None
    questions_per_chunk: int
    generation_concurrency: int
    chunk_limit: int | None
    embedding: str
    vector_store_path: str | None
    deep_memory_backend: Literal["deeplake", "local"]
    stale_after_s: float
    llm_max_retries: int = 4
    llm_timeout_s: float = 60.0
    budget_usd: float | None = None
    llm_mode: Literal["online", "batch"] = "online"
    llm_key_configured: bool
    activeloop_token_configured: bool
    is_cloud: bool
    available: bool
    unavailable_reason: str | None = None
    generator: str = ""
    # True when dmdesk's local model writes the questions (no key, no URL): llm_model unused.
    generator_is_local: bool = False
