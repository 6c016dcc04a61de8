"""Issue 13, tokens and cost: a run records the `usage` the LLM reported for every call it paid
for, and shows what that cost at the model's price (the CLI, `run --json`, the window)."""

from __future__ import annotations

import json

import pytest

from dmdesk.domain.status import RunStatus
from dmdesk.jobs.runner import run_job
from dmdesk.llm.pricing import PRICE_ENV, cost_usd, price_per_mtok
from dmdesk.services.runs import TrainingRunService
from dmdesk.testing.llm_server import FakeLLMServer
from dmdesk.testing.plugin import chunk_texts


def test_a_runs_tokens_equal_the_servers_usage_and_cost_follows_the_price(
    dmdesk_context, dmdesk_store, dmdesk_llm_server: FakeLLMServer, monkeypatch
) -> None:
    ctx = dmdesk_context(vector_store_path=dmdesk_store(chunk_texts(30)), llm_model="gpt-4o-mini")
    runs = TrainingRunService(ctx)
    messages: list[str] = []
    run = run_job(runs.ctx, runs.start_generation().id, lambda u: messages.append(u.message))
    assert run.status is RunStatus.GENERATED
    stats = dmdesk_llm_server.stats
    assert stats.prompt_tokens > 0 and stats.completion_tokens > 0
    assert (run.prompt_tokens, run.completion_tokens) == (
        stats.prompt_tokens,
        stats.completion_tokens,
    )
    expected = (stats.prompt_tokens * 0.15 + stats.completion_tokens * 0.60) / 1e6
    assert run.cost_usd == pytest.approx(expected)
    assert any("tokens in" in m and "$" in m for m in messages)  # live, while it ran
    assert run.to_json()["prompt_tokens"] == stats.prompt_tokens
    monkeypatch.setenv(PRICE_ENV, "1,2")  # a negotiated price wins
    again = runs.get_run(run.id)
    assert again.cost_usd == pytest.approx(
        (stats.prompt_tokens * 1 + stats.completion_tokens * 2) / 1e6
    )


def test_tokens_of_a_failed_session_and_its_proceed_add_up_to_the_servers(
    dmdesk_context, dmdesk_store, dmdesk_llm_server: FakeLLMServer
) -> None:
    """Calls whose answers were never written (the run failed) were paid for: they count."""
    ctx = dmdesk_context(vector_store_path=dmdesk_store(chunk_texts(20)), generation_concurrency=1)
    runs = TrainingRunService(ctx)
    dmdesk_llm_server.configure(fail_after=8, fail_status=503)
    failed = run_job(runs.ctx, runs.start_generation().id)
    assert failed.status is RunStatus.GENERATING_FAILED
    assert failed.prompt_tokens == dmdesk_llm_server.stats.prompt_tokens > 0
    dmdesk_llm_server.configure(fail_after=None)
    done = run_job(runs.ctx, runs.proceed(failed.id).id)
    assert done.status is RunStatus.GENERATED
    stats = dmdesk_llm_server.stats
    assert (done.prompt_tokens, done.completion_tokens) == (
        stats.prompt_tokens,
        stats.completion_tokens,
    )
    assert done.cost_usd is None  # "test-model" has no price: tokens only
    assert done.usage_text is not None and "$" not in done.usage_text


def test_the_local_model_uses_no_paid_tokens() -> None:
    assert cost_usd(None, 0, 0) is None


def test_prices_match_model_families_and_unknown_models_have_none(monkeypatch) -> None:
    monkeypatch.delenv(PRICE_ENV, raising=False)
    assert price_per_mtok("gpt-4o-mini-2024-07-18") == (0.15, 0.60)
    assert price_per_mtok("gpt-4o") == (2.50, 10.00)
    assert price_per_mtok("openai/gpt-4.1-mini") == (0.40, 1.60)
    assert price_per_mtok("llama3:8b") is None
    monkeypatch.setenv(PRICE_ENV, "abc")
    with pytest.raises(Exception, match="two numbers"):
        price_per_mtok("gpt-4o")


def test_the_cli_shows_usage(dmdesk_context, dmdesk_store, dmdesk_llm_server, capsys) -> None:
    from dmdesk.cli import main

    ctx = dmdesk_context(vector_store_path=dmdesk_store(chunk_texts(5)), llm_model="gpt-4o")
    runs = TrainingRunService(ctx)
    run = run_job(runs.ctx, runs.start_generation().id)
    assert main(["run", str(run.id)]) == 0
    assert "LLM usage" in capsys.readouterr().out
    assert main(["run", str(run.id), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["completion_tokens"] == dmdesk_llm_server.stats.completion_tokens
    assert data["cost_usd"] > 0
