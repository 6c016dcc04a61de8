"""Issue 13, cost before and during a run: `generate --estimate` (no LLM call), the Workflow
card's estimate, and a budget that stops a run cleanly and lets Proceed finish it exactly once."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from dmdesk.domain.errors import InvalidSettings
from dmdesk.domain.status import RunStatus
from dmdesk.jobs.runner import run_job
from dmdesk.llm.pricing import PRICE_ENV
from dmdesk.services.estimate import estimate_with
from dmdesk.services.runs import TrainingRunService
from dmdesk.testing.llm_server import FakeLLMServer
from dmdesk.testing.plugin import chunk_ids, chunk_texts
from tests.helpers import chunk_pair_counts

# At $1,000 per million tokens either way a call of ~200 tokens costs ~$0.2: a budget of a few
# dollars is met after a dozen calls.
DEAR = "1000,1000"


def test_the_budget_stops_a_run_cleanly_and_proceed_after_raising_it_finishes_exactly_once(
    dmdesk_context, dmdesk_store, dmdesk_llm_server: FakeLLMServer, monkeypatch
) -> None:
    monkeypatch.setenv(PRICE_ENV, DEAR)
    store = dmdesk_store(chunk_texts(60))
    ctx = dmdesk_context(vector_store_path=store, budget_usd=3, generation_concurrency=4)
    runs = TrainingRunService(ctx)
    stopped = run_job(runs.ctx, runs.start_generation().id)

    assert stopped.status is RunStatus.GENERATING_FAILED
    assert "budget reached ($" in (stopped.error_message or "")
    assert "of $3.00)" in (stopped.error_message or "")
    assert stopped.cost_usd is not None and stopped.cost_usd <= 3.0
    assert 0 < stopped.processed_chunks < 60
    # Stopped cleanly: every call that was answered (paid for) was written, none twice.
    assert dmdesk_llm_server.stats.successes == stopped.processed_chunks
    assert set(chunk_pair_counts(ctx, stopped.id).values()) == {1}

    raised = TrainingRunService(dmdesk_context(vector_store_path=store, budget_usd=100))
    done = run_job(raised.ctx, raised.proceed(stopped.id).id)
    assert done.status is RunStatus.GENERATED, done.error_message
    assert chunk_pair_counts(ctx, done.id) == dict.fromkeys(chunk_ids(60), 1)
    asked = Counter(dmdesk_llm_server.stats.ok_passages)
    assert len(asked) == 60 and set(asked.values()) == {1}  # each chunk paid for once
    assert done.cost_usd is not None and done.cost_usd <= 100


def test_a_budget_the_run_could_not_keep_without_a_price_is_refused_before_it_starts(
    dmdesk_context, dmdesk_store, dmdesk_llm_server: FakeLLMServer
) -> None:
    ctx = dmdesk_context(vector_store_path=dmdesk_store(chunk_texts(5)), budget_usd=1)
    runs = TrainingRunService(ctx)
    with pytest.raises(InvalidSettings, match=r"knows no price .*test-model"):
        runs.start_generation()
    assert runs.list_runs() == []
    assert dmdesk_llm_server.stats.requests == 0


def test_the_estimate_calls_no_llm_and_is_near_what_the_run_uses(
    dmdesk_context, dmdesk_store, dmdesk_llm_server: FakeLLMServer, monkeypatch
) -> None:
    monkeypatch.delenv(PRICE_ENV, raising=False)
    texts = [t * (1 + i % 7) for i, t in enumerate(chunk_texts(80))]  # uneven lengths
    ctx = dmdesk_context(
        vector_store_path=dmdesk_store(texts), llm_model="gpt-4o-mini", questions_per_chunk=2
    )
    est = estimate_with(ctx)
    assert dmdesk_llm_server.stats.requests == 0
    assert est.chunks == 80 and est.sampled == 80 and est.mode == "online"
    assert est.cost_usd == pytest.approx(
        (est.prompt_tokens * 0.15 + est.completion_tokens * 0.60) / 1e6
    )
    runs = TrainingRunService(ctx)
    said: list[str] = []
    run = run_job(runs.ctx, runs.start_generation().id, lambda u: said.append(u.message))
    assert any("for the whole run" in m for m in said)  # refined from its own calls, live
    used = dmdesk_llm_server.stats
    # The test server counts 4 characters a token, as OpenAI's rule of thumb: within 15 %.
    assert est.prompt_tokens == pytest.approx(used.prompt_tokens, rel=0.15)
    assert est.completion_tokens == pytest.approx(used.completion_tokens, rel=0.5)
    assert run.cost_usd == pytest.approx(est.cost_usd, rel=0.3)


def test_the_estimate_samples_a_large_store_and_halves_the_price_in_batch_mode(
    dmdesk_context, dmdesk_store, monkeypatch
) -> None:
    from dmdesk.services import estimate

    monkeypatch.setattr(estimate, "SAMPLE_ROWS", 50)
    store = dmdesk_store(chunk_texts(400))
    online = estimate_with(dmdesk_context(vector_store_path=store, llm_model="gpt-4o-mini"))
    batch = estimate_with(
        dmdesk_context(vector_store_path=store, llm_model="gpt-4o-mini", llm_mode="batch")
    )
    assert online.sampled == 50 and online.chunks == 400
    assert batch.cost_usd == pytest.approx(online.cost_usd / 2)
    assert "Batch API" in batch.text and "400 chunks" in online.text
    assert online.cost_usd is not None
    tight = estimate_with(
        dmdesk_context(
            vector_store_path=store,
            llm_model="gpt-4o-mini",
            llm_mode="online",
            budget_usd=online.cost_usd / 2,
        )
    )
    assert "over the $" in tight.text and "the run would stop there" in tight.text


def test_generate_estimate_prints_it_and_starts_nothing(
    dmdesk_context, dmdesk_store, dmdesk_llm_server: FakeLLMServer, capsys
) -> None:
    from dmdesk.cli import main

    dmdesk_context(vector_store_path=dmdesk_store(chunk_texts(12)), llm_model="gpt-4o-mini")
    assert main(["generate", "--estimate"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Estimate: 12 chunks") and "$" in out
    assert main(["generate", "--estimate", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["chunks"] == 12 and data["cost_usd"] > 0
    assert main(["runs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert dmdesk_llm_server.stats.requests == 0


def test_generate_with_an_unpriced_budget_exits_2_with_the_reason(
    dmdesk_context, dmdesk_store, capsys
) -> None:
    from dmdesk.cli import main

    dmdesk_context(vector_store_path=dmdesk_store(chunk_texts(3)), budget_usd=5)
    assert main(["generate"]) == 2
    assert "DMDESK_LLM_PRICE_PER_MTOK" in capsys.readouterr().err
