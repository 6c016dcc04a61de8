"""What a generation session's LLM calls used and cost, and the budget they keep: one object
shared by the online calls (`dmdesk.jobs.generation`) and the Batch API rounds
(`dmdesk.jobs.batch`), so neither reaches into the other's counters.

Tokens come from two places: the generator counts what its online calls used (`usage`), and a
batch round adds what its batches used as it writes them. `unwritten` is what is not on the
run's row yet; `written` marks it so. The cost is the run's earlier sessions (from its row, at
start) plus this session's tokens at the model's price (the Batch API's when the run is batch
mode). A budget (`budget_usd`) is kept before each call — priced at the session's average
call, or estimated from the passage before there is one — and before each batch is submitted;
once reached, `reached` says so and nothing new is asked.
"""

from __future__ import annotations

from typing import Any

from dmdesk.domain.errors import DmdeskError, InvalidSettings
from dmdesk.domain.models import describe_usage
from dmdesk.llm.pricing import budget_reached, budget_unpriced, cost_usd, usd
from dmdesk.services.estimate import call_tokens


class Ledger:
    def __init__(
        self,
        model: str | None = None,
        *,
        budget_usd: float | None = None,
        batch_priced: bool = False,
    ) -> None:
        self.model = model
        self.budget = budget_usd
        self.batch_priced = batch_priced  # the run's tokens are priced at the Batch API's price
        self.earlier_cost = 0.0  # what the run's earlier sessions spent
        self.calls_in_flight = 0
        self.calls_done = 0
        self.reached: DmdeskError | None = None  # the budget stopped the run
        self._counter: Any = None  # the generator, when it counts its calls' tokens
        self._outside = (0, 0)  # tokens of calls made outside the generator (batches)
        self._written = (0, 0)

    # -- what is counted -----------------------------------------------------------------------

    def count(self, generator: Any) -> None:
        """The generator whose `prompt_tokens` / `completion_tokens` count this session's
        online calls (the local model counts none: it costs nothing)."""
        self._counter = generator if hasattr(generator, "prompt_tokens") else None

    @property
    def priced(self) -> bool:
        """Whether the calls cost anything to keep a budget against."""
        return self._counter is not None

    def set_earlier(self, prompt: int, completion: int) -> None:
        """The tokens the run's earlier sessions used (its row's, at start)."""
        self.earlier_cost = cost_usd(self.model, prompt, completion, batch=self.batch_priced) or 0.0

    def tokens(self) -> tuple[int, int]:
        """(prompt, completion) tokens this session has used."""
        gen = self._counter
        online = (int(gen.prompt_tokens), int(gen.completion_tokens)) if gen is not None else (0, 0)
        return online[0] + self._outside[0], online[1] + self._outside[1]

    def unwritten(self) -> tuple[int, int, tuple[int, int]]:
        """Tokens used since the last `written`: (prompt, completion, the count they bring the
        session to — what to pass to `written` once they are on the row: calls answered while
        they are being written are not marked written with them)."""
        now = self.tokens()
        return now[0] - self._written[0], now[1] - self._written[1], now

    def written(self, upto: tuple[int, int]) -> None:
        """The session's tokens up to `upto` (from `unwritten`) are on the run's row now."""
        self._written = upto

    def batch_written(self, prompt: int, completion: int, calls: int) -> None:
        """A batch's answers were written with their tokens: counted, on the row, and done for
        the cost per call."""
        self._outside = (self._outside[0] + prompt, self._outside[1] + completion)
        self._written = (self._written[0] + prompt, self._written[1] + completion)
        self.calls_done += calls

    # -- the cost and the budget ---------------------------------------------------------------

    def check_priced(self) -> None:
        """A budget needs a price: refused before the first call, not halfway."""
        if self.budget is not None and self.priced and cost_usd(self.model, 0, 0) is None:
            raise InvalidSettings(budget_unpriced(self.model, self.budget))

    def session_cost(self) -> float | None:
        prompt, completion = self.tokens()
        return cost_usd(self.model, prompt, completion, batch=self.batch_priced)

    def spent(self) -> float:
        """What the run has spent on the LLM: its earlier sessions and this one."""
        return self.earlier_cost + (self.session_cost() or 0.0)

    def call_cost(self, text: str, n_questions: int, *, batch: bool | None = None) -> float:
        """The estimated cost of one call on `text` (before any has been answered)."""
        prompt, completion = call_tokens(text, n_questions)
        priced = self.batch_priced if batch is None else batch
        return cost_usd(self.model, prompt, completion, batch=priced) or 0.0

    def next_call_passes(self, text: str, n_questions: int) -> bool:
        """Whether the next online call (and those in flight) would pass the budget: each
        priced at the average of this session's calls, or estimated from the passage before
        there is one. Once passed, `reached` says so."""
        if self.reached is not None:
            return True
        if self.budget is None or not self.priced:
            return False
        spent = self.spent()
        if self.calls_done:
            per_call = (spent - self.earlier_cost) / self.calls_done
        else:
            per_call = self.call_cost(text, n_questions)
        if spent + (self.calls_in_flight + 1) * per_call <= self.budget:
            return False
        self.reached = DmdeskError(budget_reached(spent, self.budget))
        return True

    def submission_passes(self, committed: float) -> bool:
        """Whether submitting batches worth `committed` (estimated) would pass the budget."""
        if self.budget is None:
            return False
        spent = self.spent()
        if spent + committed <= self.budget:
            return False
        self.reached = DmdeskError(budget_reached(spent, self.budget, committed))
        return True

    def usage_text(self, calls_left: int) -> str | None:
        """This session's tokens and cost, and the whole run's cost as this session's calls so
        far predict it for `calls_left` more — against the budget when there is one."""
        prompt, completion = self.tokens()
        cost = self.session_cost()
        text = describe_usage(prompt, completion, cost)
        if text and cost is not None and self.calls_done:
            whole = self.spent() + cost / self.calls_done * max(0, calls_left)
            text += f" · about {usd(whole)} for the whole run"
            if self.budget is not None:
                text += f" (budget {usd(self.budget)})"
        return text
