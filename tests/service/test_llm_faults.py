"""Issue 6: every LLM fault admins meet, through the real openai SDK against the test server.
Transient faults are retried by the SDK (backoff, Retry-After honoured); permanent ones fail the
run at once with a message naming the cause; the run is always left resumable."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from dmdesk.domain.status import RunStatus
from dmdesk.jobs.runner import run_job
from dmdesk.services.context import ServiceContext
from dmdesk.services.runs import TrainingRunService
from dmdesk.testing.llm_server import FakeLLMServer


@dataclass
class Case:
    knobs: dict[str, Any]
    status: RunStatus
    message: str = ""
    env: dict[str, Any] = field(default_factory=dict)
    max_requests: int | None = None
    pairs_per_chunk: int | None = None


RECOVERS = {"fail_after": 2, "fail_times": 2}
CASES = {
    "429_retry_after_then_ok": Case(
        {**RECOVERS, "fail_status": 429, "retry_after": 0.2}, RunStatus.GENERATED
    ),
    # Issue 13: a 429 alone never fails a run; refusing for longer than the patience does.
    "429_persistent": Case(
        {"fail_after": 2, "fail_status": 429, "retry_after": 0.05},
        RunStatus.GENERATING_FAILED,
        "kept refusing requests (429, rate-limiting) for more than 2 s",
        env={"llm_rate_limit_patience_s": 2.0},
    ),
    "500_then_ok": Case({**RECOVERS, "fail_status": 500}, RunStatus.GENERATED),
    "502_then_ok": Case({**RECOVERS, "fail_status": 502}, RunStatus.GENERATED),
    "503_then_ok": Case({**RECOVERS, "fail_status": 503}, RunStatus.GENERATED),
    "503_persistent": Case(
        {"fail_after": 2, "fail_status": 503}, RunStatus.GENERATING_FAILED, "kept failing (503)"
    ),
    "dropped_connection_then_ok": Case({**RECOVERS, "fail_mode": "drop"}, RunStatus.GENERATED),
    "read_timeout": Case(
        {"fail_after": 2, "fail_mode": "hang", "hang_s": 3.0},
        RunStatus.GENERATING_FAILED,
        "did not answer in time",
        env={"llm_timeout_s": 0.3, "llm_max_retries": 1},
    ),
    "malformed_json_once_then_ok": Case(
        {"fail_after": 2, "fail_times": 1, "fail_mode": "malformed"}, RunStatus.GENERATED
    ),
    "malformed_json_persistent": Case(
        {"fail_after": 2, "fail_mode": "malformed"},
        RunStatus.GENERATING_FAILED,
        "reply is not JSON",
    ),
    "empty_reply_persistent": Case(
        {"fail_after": 2, "fail_mode": "empty"}, RunStatus.GENERATING_FAILED, "empty reply"
    ),
    "too_many_questions_truncated": Case(
        {"questions_per_reply": 7},
        RunStatus.GENERATED,
        env={"questions_per_chunk": 2},
        pairs_per_chunk=2,
    ),
    "fewer_questions_accepted": Case(
        {"questions_per_reply": 1},
        RunStatus.GENERATED,
        env={"questions_per_chunk": 3},
        pairs_per_chunk=1,
    ),
    "401_fails_at_once": Case(
        {"fail_after": 2, "fail_status": 401},
        RunStatus.GENERATING_FAILED,
        "refused the API key (401)",
        max_requests=3,
    ),
    "403_fails_at_once": Case(
        {"fail_after": 2, "fail_status": 403},
        RunStatus.GENERATING_FAILED,
        "denied access (403)",
        max_requests=3,
    ),
    "404_model_fails_at_once": Case(
        {"fail_after": 2, "fail_status": 404},
        RunStatus.GENERATING_FAILED,
        "does not know model",
        max_requests=3,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_llm_fault(
    name: str, make_ctx: Callable[..., ServiceContext], store200, llm_server: FakeLLMServer
) -> None:
    case = CASES[name]
    env = {
        "vector_store_path": store200,
        "chunk_limit": 6,
        "generation_concurrency": 1,
        "llm_max_retries": 3,
    } | case.env
    ctx = make_ctx(**env)
    llm_server.configure(**case.knobs)
    runs = TrainingRunService(ctx)
    run = run_job(runs.ctx, runs.start_generation().id)
    assert run.status is case.status, run.error_message
    if case.message:
        assert case.message in run.error_message
        assert run.error_message.startswith(f"Generation stopped at {run.processed_chunks}/6")
    if case.max_requests is not None:
        assert llm_server.stats.requests == case.max_requests  # not retried
    if case.pairs_per_chunk is not None:
        assert run.pair_count == 6 * case.pairs_per_chunk
    if case.status is RunStatus.GENERATED:
        assert run.processed_chunks == 6


def test_connection_refused_fails_with_a_message(
    make_ctx: Callable[..., ServiceContext], store200
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = make_ctx(
        vector_store_path=store200,
        chunk_limit=3,
        llm_max_retries=1,
        llm_base_url=f"http://127.0.0.1:{port}/v1",
    )
    runs = TrainingRunService(ctx)
    run = run_job(runs.ctx, runs.start_generation().id)
    assert run.status is RunStatus.GENERATING_FAILED
    assert f"Could not reach the LLM at http://127.0.0.1:{port}/v1" in run.error_message
