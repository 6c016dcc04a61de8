"""Generation through OpenAI's Batch API (`llm_mode = "batch"`, issue 13).

A run goes in rounds:

1. **Wait for the open batches** recorded on the run (`settings["batches"]`): poll them every
   `batch_poll_interval_s`, and as each ends write its output — each chunk's pairs, the tokens
   and the batch marked `written`, in one transaction, skipping chunks that already have pairs:
   every chunk's pairs exist exactly once, whatever is killed when.
2. **Submit the chunks that still have no pairs**, in row order, as JSONL files of at most
   `batch_max_requests` lines (and 190 MB), each uploaded, *recorded*, created as a batch, and
   its id recorded — before any waiting. A process killed between `batches.create` and the
   record of its id finds the batch again by its input file (`batches.list`) instead of
   creating it twice.
3. Repeat: the second round holds only the lines that failed (the error file, an expired or
   failed batch, a reply without questions). After `MAX_ROUNDS` rounds the run fails, saying
   how many chunks the API kept failing and why; Proceed tries them again.

Stop cancels the open batches (`batches.cancel`) and leaves the run `generating_failed`; Proceed
collects what the cancelled batches had answered, then submits the rest. A dmdesk process that
dies while batches are open leaves a stale run that the next start re-attaches to
(`TrainingRunService.recover_stale`), as it does for DeepLake Cloud training: the batches are
paid for once. Progress counts the open batches' answered requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from dmdesk.domain.errors import Cancelled, DmdeskError
from dmdesk.domain.snapshot import OPEN, WRITTEN, RunSnapshot
from dmdesk.jobs.job import Stopped
from dmdesk.jobs.ledger import Ledger
from dmdesk.llm.openai_batch import MAX_FILE_BYTES, TERMINAL, Answer, BatchClient
from dmdesk.services.context import ServiceContext
from dmdesk.vectorstore.service import Chunk


class BatchJob(Protocol):
    """What a batch round needs of the generation job it runs in
    (`dmdesk.jobs.generation.GenerationJob`, which imports this module — not the reverse):
    its run, its ledger (tokens, cost, budget), progress, the stop signal and the commit of
    answers (chunks, tokens and the batch records in one transaction)."""

    ctx: ServiceContext
    run_id: int
    processed: int
    total: int
    ledger: Ledger  # the session's tokens, cost and budget, shared with the online calls

    def report(self, message: str = "", extra: int = 0) -> None: ...

    def stop_signal(self) -> contextlib.AbstractContextManager[None]: ...

    async def until_stopped(self) -> None: ...

    def guarded_write(self, **values: Any) -> None: ...

    def commit(
        self,
        answered: list[tuple[str, list[str]]],
        prompt_tokens: int,
        completion_tokens: int,
        settings: RunSnapshot | None = None,
    ) -> None: ...


log = logging.getLogger(__name__)

MAX_ROUNDS = 4


class BatchRound:
    def __init__(
        self,
        job: BatchJob,
        generator: Any,
        store: Any,
        snapshot: RunSnapshot,
        done_ids: set[str],
        *,
        submit: bool = True,
    ) -> None:
        self.job = job
        self.submit = submit  # False: collect the open batches only (the run is online now)
        self.api: BatchClient = generator.batches
        self.generator = generator
        self.store = store
        self.settings = snapshot
        self.records: list[dict[str, Any]] = [dict(b) for b in snapshot.batches]
        self.done = done_ids
        self.n = snapshot.need(snapshot.questions_per_chunk, "number of questions per chunk")
        selection = snapshot.need(snapshot.selection, "chunk selection")
        self.rows = selection.rows
        self.repeated_ids = selection.chunk_count < self.rows
        self.cfg = job.ctx.config
        self.last_error: str | None = None

    # -- the rounds ----------------------------------------------------------------------------

    async def run(self) -> None:
        job = self.job
        with job.stop_signal():
            try:
                async with asyncio.TaskGroup() as group:
                    stopper = group.create_task(job.until_stopped())
                    await self._rounds()
                    stopper.cancel()
            except BaseExceptionGroup as errors:
                first = errors.exceptions[0]
                reason = first.reason if isinstance(first, Stopped) else first
                if isinstance(reason, Cancelled):
                    await self._cancel_open()
                raise reason from None

    async def _rounds(self) -> None:
        if not self.submit:
            await self._wait_for_open()
            return
        for round_no in range(1, MAX_ROUNDS + 2):
            await self._wait_for_open()
            if self.job.ledger.reached is not None:
                raise self.job.ledger.reached
            if self.job.processed >= self.job.total:
                return
            if round_no > MAX_ROUNDS:
                break
            await self._submit(round_no)
        left = self.job.total - self.job.processed
        raise DmdeskError(
            f"The Batch API failed {left} chunks {MAX_ROUNDS} times (last: "
            f"{self.last_error or 'no answer'}). Proceed submits them again."
        )

    # -- submitting ----------------------------------------------------------------------------

    async def _submit(self, round_no: int) -> None:
        """Every chunk without pairs, in files of at most `batch_max_requests` lines."""
        feed = self.store.iter_chunks(
            self.rows, skip_ids=set(self.done), batch_size=1024, once_per_id=self.repeated_ids
        )
        lines: list[bytes] = []
        size = 0
        committed = 0.0  # the estimated cost of what this round submits
        budgeted = self.cfg.budget_usd is not None
        while (item := await asyncio.to_thread(next, feed, None)) is not None:
            chunks: list[Chunk] = item[0]
            for chunk in chunks:
                if budgeted:
                    est = self.job.ledger.call_cost(chunk.text, self.n, batch=True)
                    if self.job.ledger.submission_passes(committed + est):
                        break
                    committed += est
                line = self.api.request_line(chunk.id, chunk.text, self.n)
                if lines and (
                    len(lines) >= self.cfg.batch_max_requests or size + len(line) > MAX_FILE_BYTES
                ):
                    await self._create(lines, round_no)
                    lines, size = [], 0
                lines.append(line)
                size += len(line)
            if self.job.ledger.reached is not None:
                break
        if lines:
            await self._create(lines, round_no)

    async def _create(self, lines: list[bytes], round_no: int) -> None:
        k = len(self.records) + 1
        self.job.report(f"Batch API: uploading batch {k} ({len(lines):,} requests)")
        name = f"dmdesk-run{self.job.run_id}-batch{k}.jsonl"
        file_id = await self.api.upload(b"".join(lines), name)
        record: dict[str, Any] = {
            "file": file_id,
            "id": None,
            "requests": len(lines),
            "round": round_no,
            "state": OPEN,
        }
        self.records.append(record)
        await self._persist()  # the file first: a kill before the id is recorded finds it
        batch = await self.api.create(file_id, {"dmdesk_run": str(self.job.run_id)})
        record["id"] = str(batch.id)
        await self._persist()
        log.info("run %s: batch %s created (%s requests)", self.job.run_id, batch.id, len(lines))

    # -- waiting and writing -------------------------------------------------------------------

    async def _wait_for_open(self) -> None:
        while True:
            pending = [r for r in self.records if r["state"] == OPEN]
            if not pending:
                return
            answered = 0
            for record in pending:
                batch = await self._batch_of(record)
                if batch.status in TERMINAL:
                    await self._collect(record, batch)
                else:
                    counts = batch.request_counts
                    answered += int(getattr(counts, "completed", 0) or 0) if counts else 0
            still = [r for r in self.records if r["state"] == OPEN]
            if still:
                total = sum(int(r.get("requests") or 0) for r in still)
                self.job.report(
                    f"Batch API: {answered:,} of {total:,} requests answered in {len(still)} "
                    "open batch(es); waiting for the provider",
                    extra=answered,
                )
                await asyncio.sleep(self.cfg.batch_poll_interval_s)

    async def _batch_of(self, record: dict[str, Any]) -> Any:
        """The record's batch; one recorded without its id is found by its input file, or
        created now (it never was)."""
        if record.get("id"):
            return await self.api.retrieve(record["id"])
        batch = await self.api.find_by_input(record["file"])
        if batch is None:
            batch = await self.api.create(record["file"], {"dmdesk_run": str(self.job.run_id)})
        record["id"] = str(batch.id)
        await self._persist()
        return batch

    async def _collect(self, record: dict[str, Any], batch: Any) -> None:
        answers: list[Answer] = []
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                answers += self.api.parse(await self.api.content(file_id), self.n)
        failed = [a for a in answers if a.questions is None]
        if failed:
            self.last_error = failed[-1].error
        elif batch.status == "failed":
            errors = getattr(getattr(batch, "errors", None), "data", None) or []
            self.last_error = str(getattr(errors[0], "message", "")) if errors else "failed"
        record["state"] = WRITTEN
        record["status"] = str(batch.status)
        await asyncio.to_thread(self._write, answers)

    def _write(self, answers: list[Answer]) -> None:
        """One batch's answers, its tokens and its record, in one transaction (blocking)."""
        answered: dict[str, list[str]] = {}
        for a in answers:
            if a.questions is not None and a.custom_id not in self.done:
                answered.setdefault(a.custom_id, a.questions)
        prompt = sum(a.prompt_tokens for a in answers)
        completion = sum(a.completion_tokens for a in answers)
        self.settings = self._recorded()
        job = self.job
        job.commit(list(answered.items()), prompt, completion, self.settings)
        self.done.update(answered)
        job.ledger.batch_written(prompt, completion, len(answers))

    def _recorded(self) -> RunSnapshot:
        """The run's snapshot with the batches as they stand now."""
        return self.settings.model_copy(update={"batches": tuple(dict(r) for r in self.records)})

    async def _persist(self) -> None:
        self.settings = self._recorded()
        await asyncio.to_thread(self.job.guarded_write, settings=self.settings)

    async def _cancel_open(self) -> None:
        """Stop: cancel every open batch (what they answered is collected by Proceed)."""
        for record in self.records:
            if record["state"] == OPEN and record.get("id"):
                try:
                    await self.api.cancel(record["id"])
                except Exception as exc:  # an ended batch cannot be cancelled: fine
                    log.info("run %s: cancel %s: %s", self.job.run_id, record["id"], exc)
