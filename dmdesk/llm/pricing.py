"""What a run's tokens cost: a small table of OpenAI list prices (USD per million tokens, input
and output), overridable with `DMDESK_LLM_PRICE_PER_MTOK="in,out"` for any model or server (a
negotiated price, a self-hosted model at its running cost). An unknown model has no price: its
tokens are shown without a cost, never with a guessed one.

Prices as published by OpenAI (2026); a model name matches the longest key it starts with, so
dated snapshots ("gpt-4o-mini-2024-07-18") take their family's price.
"""

from __future__ import annotations

import os

from dmdesk.domain.errors import InvalidSettings

PRICE_ENV = "DMDESK_LLM_PRICE_PER_MTOK"

BATCH_DISCOUNT = 0.5  # the Batch API's price, of the online one (an override is the online price)

PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o4-mini": (1.10, 4.40),
    "o3-mini": (1.10, 4.40),
}


def price_per_mtok(model: str | None) -> tuple[float, float] | None:
    """(input, output) USD per million tokens for `model`, or None when unknown."""
    override = os.environ.get(PRICE_ENV, "").strip()
    if override:
        try:
            inp, out = (float(part) for part in override.split(","))
        except ValueError:
            raise InvalidSettings(
                f'{PRICE_ENV} must be two numbers, "input,output" USD per million tokens '
                f'(e.g. "0.15,0.60"); it is "{override}".'
            ) from None
        if inp < 0 or out < 0:
            raise InvalidSettings(f"{PRICE_ENV} cannot be negative; it is {override!r}.")
        return inp, out
    if not model:
        return None
    name = model.lower().rsplit("/", 1)[-1]  # "openai/gpt-4o-mini" as some proxies name it
    keys = [k for k in PER_MTOK if name.startswith(k)]
    return PER_MTOK[max(keys, key=len)] if keys else None


def cost_usd(
    model: str | None, prompt_tokens: int, completion_tokens: int, *, batch: bool = False
) -> float | None:
    """The cost of those tokens at `model`'s price (the Batch API's: `BATCH_DISCOUNT` of it),
    or None when the price is unknown — or the override malformed: the tokens are then shown
    without a cost (`price_per_mtok` says why)."""
    try:
        price = price_per_mtok(model)
    except InvalidSettings:
        return None
    if price is None:
        return None
    cost = (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000
    return cost * BATCH_DISCOUNT if batch else cost


def budget_unpriced(model: str | None, budget: float) -> str:
    """Why a budget cannot be kept: the model has no known price."""
    return (
        f"A budget of ${budget:g} is set, but dmdesk knows no price for the LLM model "
        f'{model!r}, so it cannot keep to it. Set its price with {PRICE_ENV}="input,output" '
        "(USD per million tokens), or remove the budget (Settings, or DMDESK_BUDGET_USD)."
    )


def budget_reached(spent: float, budget: float, next_batch: float | None = None) -> str:
    """Why a run stopped at its budget (online: the next call would pass it; batch mode: the
    next batch, estimated at `next_batch`, would), and the way on."""
    pending = "" if next_batch is None else f", with the next batch estimated at {usd(next_batch)}"
    return (
        f"budget reached ({usd(spent)} of {usd(budget)}{pending}). Raise the budget (Settings, "
        "or DMDESK_BUDGET_USD), then Proceed."
    )


def usd(amount: float) -> str:
    return f"${amount:.4f}" if amount < 1 else f"${amount:,.2f}"
