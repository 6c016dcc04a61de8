"""What a generation will use and cost, before it starts (issue 13) — without calling the LLM.

Per chunk, one chat call: the system prompt and the chunk's passage in the user prompt (about 4
characters a token, OpenAI's rule of thumb, plus the chat format's few tokens a message), and
a reply of `questions_per_chunk` questions of about `TOKENS_PER_QUESTION` tokens each in
`{"questions": [...]}`. Chunk lengths come from the store: every text of a selection up to
`SAMPLE_ROWS` rows, an evenly spaced sample of that many above it (a 1M-chunk store is
estimated in about a second). While a run goes on, the job refines the estimate from its own
calls (:func:`project`).

Batch mode (`llm_mode = "batch"`) is priced at the Batch API's half price. The local model
(no key, no URL) costs nothing: the estimate says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dmdesk.config import DmdeskConfig
from dmdesk.domain.models import describe_usage
from dmdesk.llm.openai_generator import estimate_tokens
from dmdesk.llm.pricing import cost_usd
from dmdesk.llm.prompt import SYSTEM, user_prompt
from dmdesk.services.settings import uses_local_generator
from dmdesk.vectorstore.service import count_chunks

SAMPLE_ROWS = 2_000
TOKENS_PER_QUESTION = 24  # a search question of ~15 words, quoted in JSON
REPLY_OVERHEAD_TOKENS = 8  # {"questions": [ ... ]}
MESSAGE_OVERHEAD_TOKENS = 11  # two chat messages (~4 each) and the reply's priming (3)


def call_tokens(text: str, n_questions: int) -> tuple[int, int]:
    """(prompt, completion) tokens of one chunk's call, estimated."""
    prompt = estimate_tokens(SYSTEM) + estimate_tokens(user_prompt(text, n_questions))
    return (
        prompt + MESSAGE_OVERHEAD_TOKENS,
        REPLY_OVERHEAD_TOKENS + n_questions * TOKENS_PER_QUESTION,
    )


@dataclass(frozen=True)
class GenerationEstimate:
    chunks: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None  # None: no known price for the model (tokens only)
    model: str
    mode: str  # "online" | "batch" | "local"
    sampled: int  # chunk texts measured (all of them, or a sample)
    budget_usd: float | None = None  # the budget in force, to compare with

    @property
    def text(self) -> str:
        head = f"Estimate: {self.chunks:,} chunks"
        if self.mode == "local":
            return f"{head} · the local model writes the questions: no LLM cost"
        usage = describe_usage(self.prompt_tokens, self.completion_tokens, self.cost_usd)
        where = f" at {self.model}" + (" (Batch API, half price)" if self.mode == "batch" else "")
        price = "" if self.cost_usd is not None else " (no known price for this model)"
        text = f"{head} · ~{usage or 'no tokens'}{where}{price}"
        if self.budget_usd is not None and self.cost_usd is not None:
            if self.cost_usd <= self.budget_usd:
                text += f", within the ${self.budget_usd:g} budget"
            else:
                text += f", over the ${self.budget_usd:g} budget: the run would stop there"
        return text

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def estimate_generation(config: DmdeskConfig, store: Any) -> GenerationEstimate:
    """The estimate of a generation started now with `config` on `store` (an open
    VectorStoreService; the caller closes it). Reads the store only."""
    rows = store.row_count()
    if config.chunk_limit is not None:
        rows = min(rows, config.chunk_limit)
    chunks = count_chunks(store, rows) if rows else 0
    n = config.questions_per_chunk
    if uses_local_generator(config):
        return GenerationEstimate(chunks, 0, 0, 0.0, "local model", "local", 0)
    if rows <= SAMPLE_ROWS:
        sample = list(range(rows))
    else:
        step = rows / SAMPLE_ROWS
        sample = [int(i * step) for i in range(SAMPLE_ROWS)]
    texts = store.read_texts(sample) if sample else []
    per_call = [call_tokens(t, n) for t in texts]
    prompt = round(sum(p for p, _ in per_call) / len(per_call) * chunks) if per_call else 0
    completion = chunks * call_tokens("", n)[1]
    batch = config.llm_mode == "batch"
    cost = cost_usd(config.llm_model, prompt, completion, batch=batch)
    mode = "batch" if batch else "online"
    return GenerationEstimate(
        chunks, prompt, completion, cost, config.llm_model, mode, len(texts), config.budget_usd
    )


def estimate_with(ctx: Any) -> GenerationEstimate:
    """:func:`estimate_generation` on the context's configured store."""
    store = ctx.vector_store_factory(ctx.config.vector_store_path)
    try:
        return estimate_generation(ctx.config, store)
    finally:
        store.close()
