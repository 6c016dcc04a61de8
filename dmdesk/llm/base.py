"""The generator interface every job talks to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class QuestionGenerator(Protocol):
    """Writes `n` questions that a chunk answers.

    Raises :class:`dmdesk.domain.errors.LLMError` once retries are exhausted (or at once for a
    permanent error such as a refused key); returns at least one valid question otherwise.
    """

    description: str

    async def generate(self, text: str, n: int) -> list[str]: ...

    async def aclose(self) -> None: ...


def prepare_model(model: Any, say: Callable[[str], None]) -> bool:
    """Load a model before its first use, saying so first; blocking (run it in a thread).

    A model with a one-time preparation — the local question model (load, or the first time
    convert it: up to a minute), the local embedding model (a few seconds) — has
    `preparation() -> str | None` (what it will do, None when ready) and `prepare()`. Its load
    is then said in the Workflow card instead of a progress line that does not move. Returns
    whether there was anything to do.
    """
    describe = getattr(model, "preparation", None)
    what = describe() if describe is not None else None
    if not what:
        return False
    say(what)
    model.prepare()
    return True
