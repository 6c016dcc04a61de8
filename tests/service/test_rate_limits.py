"""Issue 13: generation at the provider's real limits. Against the test server's token buckets
(the real `x-ratelimit-*` headers and 429 + Retry-After, or 429s alone), a run whose
concurrency is far above the allowance slows down and finishes — every chunk's pairs exactly
once, no failure — instead of ending `generating_failed` ("kept rate-limiting")."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from dmdesk.domain.status import RunStatus
from dmdesk.jobs.runner import run_job
from dmdesk.llm.pacing import Pacer, parse_duration
from dmdesk.services.context import ServiceContext
from dmdesk.services.runs import TrainingRunService
from dmdesk.testing.llm_server import FakeLLMServer
from tests.conftest import chunk_ids
from tests.helpers import chunk_pair_counts

CHUNKS = 40


def generate_above_the_allowance(
    make_ctx: Callable[..., ServiceContext], store: object, progress: Any = None
) -> None:
    """A run of CHUNKS chunks at concurrency 32, far above the test's allowance: it must end
    `generated` with every chunk's pairs exactly once."""
    ctx = make_ctx(
        vector_store_path=store, chunk_limit=CHUNKS, generation_concurrency=32, llm_max_retries=0
    )
    runs = TrainingRunService(ctx)
    run = run_job(runs.ctx, runs.start_generation().id, progress)
    assert run.status is RunStatus.GENERATED, run.error_message
    assert chunk_pair_counts(ctx, run.id) == dict.fromkeys(chunk_ids(CHUNKS), 1)


@pytest.mark.parametrize("headers", [True, False], ids=["with-headers", "429s-only"])
def test_a_run_above_the_allowance_slows_down_and_finishes_once(
    make_ctx: Callable[..., ServiceContext],
    store200,
    llm_server: FakeLLMServer,
    headers: bool,
) -> None:
    # 600 requests/min, a burst of 5, concurrency 32: the first wave alone is over it.
    llm_server.configure(rpm_limit=600, rate_burst=5 / 600, rate_headers=headers)
    messages: list[str] = []
    started = time.monotonic()
    generate_above_the_allowance(make_ctx, store200, lambda u: messages.append(u.message))
    # The limit was really met: 40 calls at 10/s after a burst of 5 take 3.5 s at least.
    assert time.monotonic() - started >= 3.0
    if headers:  # paced by what the first reply's headers said: (almost) no 429
        assert llm_server.stats.rate_limited <= 2
    else:  # learnt from 429s alone
        assert llm_server.stats.rate_limited > 0
    assert llm_server.stats.successes == CHUNKS
    assert any("requests/min" in m for m in messages)


def test_a_run_bound_by_a_tokens_per_minute_limit_finishes_once_with_few_429s(
    make_ctx: Callable[..., ServiceContext], store200, llm_server: FakeLLMServer
) -> None:
    """Tokens, not requests, bind: a call counts its prompt and the completion it gets (the
    server charges that after answering, as a TPM limit does); the client paces with its
    prompt estimate and its replies' average completion."""
    # ~190 tokens a call; 30,000 a minute ≈ 160 calls/min; a burst of ~8 calls.
    llm_server.configure(tpm_limit=30_000, rate_burst=0.05)
    generate_above_the_allowance(make_ctx, store200)
    stats = llm_server.stats
    assert stats.successes == CHUNKS
    assert stats.rate_limited <= 2  # paced to the first reply's headers, not to 429s


def test_the_pace_follows_the_headers_allowance() -> None:
    pacer = Pacer(64)
    pacer.succeeded({"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "5"})
    assert pacer._spacing(0) == pytest.approx(60 / (600 * 0.97))
    pacer.succeeded({"x-ratelimit-limit-tokens": "60000"})
    assert pacer._spacing(2000) == pytest.approx(60 * 2000 / (60000 * 0.97))


def test_429s_halve_the_calls_in_flight_and_successes_win_them_back() -> None:
    pacer = Pacer(16)
    pacer.in_flight = 3
    pacer.refused(0.0)
    assert pacer.limit == 8
    pacer.refused(0.0)  # the same burst: one decrease
    assert pacer.limit == 8
    for _ in range(8):
        pacer.in_flight += 1
        pacer.succeeded()
    assert pacer.limit == 9


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0.5", 0.5)],
)
def test_reset_durations_are_read_as_openai_writes_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
