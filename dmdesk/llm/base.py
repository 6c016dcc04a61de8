"""The generator interface every job talks to."""

from __future__ import annotations

from typing import Protocol


class QuestionGenerator(Protocol):
    """Writes `n` questions that a chunk answers.

    Raises :class:`dmdesk.domain.errors.LLMError` once retries are exhausted (or at once for a
    permanent error such as a refused key); returns at least one valid question otherwise.
    """

    description: str

    async def generate(self, text: str, n: int) -> list[str]: ...

    async def aclose(self) -> None: ...
