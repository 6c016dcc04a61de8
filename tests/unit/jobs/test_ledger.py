"""One ledger of a generation session's tokens, cost and budget, shared by the online calls and
the Batch API rounds (issue 24: the batch round added its tokens into the generator's own
counters, and priced the budget through the job's private fields)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from dmdesk.domain.errors import InvalidSettings
from dmdesk.jobs.ledger import Ledger
from dmdesk.llm.pricing import cost_usd

MODEL = "gpt-4o-mini"


@dataclass
class Counter:  # what an OpenAI-compatible generator counts from its calls' `usage`
    prompt_tokens: int = 0
    completion_tokens: int = 0


def test_online_and_batch_tokens_are_counted_once_and_written_once() -> None:
    ledger, gen = Ledger(MODEL), Counter()
    ledger.count(gen)
    gen.prompt_tokens, gen.completion_tokens = 1000, 100  # online calls
    assert ledger.unwritten()[:2] == (1000, 100)
    ledger.batch_written(5000, 500, calls=10)  # a batch's answers, written with their tokens
    assert ledger.tokens() == (6000, 600) and ledger.calls_done == 10
    prompt, completion, upto = ledger.unwritten()
    assert (prompt, completion) == (1000, 100)  # the online calls' tokens are still to write
    gen.prompt_tokens += 300  # a call answered while they are being written
    ledger.written(upto)
    assert ledger.unwritten()[:2] == (300, 0)  # is still to write
    assert gen.prompt_tokens == 1300  # the generator's own counters stay its own


def test_spent_is_the_earlier_sessions_and_this_one_at_the_runs_price() -> None:
    ledger, gen = Ledger(MODEL, batch_priced=True), Counter(2000, 200)
    ledger.count(gen)
    ledger.set_earlier(1000, 100)
    expected = cost_usd(MODEL, 1000, 100, batch=True) + cost_usd(MODEL, 2000, 200, batch=True)
    assert ledger.spent() == pytest.approx(expected)


def test_the_budget_stops_the_next_call_priced_at_the_sessions_average() -> None:
    one_call = cost_usd(MODEL, 10_000, 1_000)
    ledger, gen = Ledger(MODEL, budget_usd=one_call * 3.5), Counter()
    ledger.count(gen)
    gen.prompt_tokens, gen.completion_tokens, ledger.calls_done = 20_000, 2_000, 2
    assert not ledger.next_call_passes("text", 3) and ledger.reached is None
    ledger.calls_in_flight = 1  # that one and the next: 4 calls' worth
    assert ledger.next_call_passes("text", 3)
    assert ledger.reached is not None and "budget" in ledger.reached.message.lower()
    assert ledger.next_call_passes("text", 3)  # reached stays reached


def test_a_batch_submission_is_refused_past_the_budget_and_a_free_writer_has_none() -> None:
    ledger = Ledger(MODEL, budget_usd=0.01)
    ledger.count(Counter())
    assert not ledger.submission_passes(0.005) and ledger.submission_passes(0.02)
    free = Ledger(MODEL, budget_usd=0.0)
    free.count(object())  # the local model counts no tokens: nothing to keep a budget against
    assert not free.priced and not free.next_call_passes("text", 3)


def test_a_budget_needs_a_known_price() -> None:
    ledger = Ledger("a-model-without-a-price", budget_usd=1.0)
    ledger.count(Counter())
    with pytest.raises(InvalidSettings):
        ledger.check_priced()
    Ledger("a-model-without-a-price").check_priced()  # no budget: nothing to keep
