"""The generation job (DESIGN.md "Generation job").

1. The run's chunks are rows [0, N) of the store recorded in its settings snapshot.
2. Chunks that already have pairs in this run are skipped (one set-based query), and the counters
   are reset from the table's truth: `total_chunks` is always the whole run (51/80, never 51/30).
3. Remaining chunks go to `generation_concurrency` concurrent LLM calls (asyncio + AsyncOpenAI).
4. Each chunk's pairs are inserted together with the counter update in one transaction; results
   that finish together share a transaction (fewer fsyncs), but a chunk is never split, so a
   crash leaves whole chunks or nothing.
5. The first error that retries did not fix stops the job: no new call starts, the calls in
   flight have `FAILURE_GRACE_S` to come back (then they are cancelled), every answer is
   written, and the run becomes `generating_failed` with a message that says where it stopped.
   Stop cancels the calls at once, writes what came back, and says "stopped by the
   administrator". A budget (`budget_usd`) stops new calls before they would pass it.

Every write is conditional on the run still being ours and `generating`; if it is not (another
process recovered or took it over) the job stops and leaves the run alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select

from dmdesk.db.models import TrainingPair, TrainingRun
from dmdesk.db.session import session_scope
from dmdesk.domain.errors import Cancelled, DmdeskError
from dmdesk.domain.models import ProgressUpdate, RunView
from dmdesk.domain.snapshot import RunSnapshot
from dmdesk.domain.status import RunStatus
from dmdesk.jobs.batch import BatchRound
from dmdesk.jobs.job import LostRun, RunJob, Stopped
from dmdesk.jobs.ledger import Ledger
from dmdesk.llm.base import QuestionGenerator, prepare_model
from dmdesk.llm.pacing import Pacer
from dmdesk.services.quality import assess_run
from dmdesk.vectorstore.service import Chunk

log = logging.getLogger(__name__)

WRITE_BATCH_MAX = 64  # finished chunks written in one transaction at most
READ_BATCH = 256  # chunk texts read from the store at once
RESUME_HINT_EVERY_S = 2.0  # how often a running session records its resume row
FAILURE_GRACE_S = 2.0  # after a failed call, how long the calls in flight may still come back


def run_on_own_loop(coro: Any) -> None:
    """`asyncio.run`, with a loop we create and close ourselves.

    deeplake 3.9 applies `nest_asyncio`, whose `asyncio.run` reuses the thread's loop and never
    closes it: in a worker thread every job would leak an event loop and its sockets. Called
    from a thread whose own loop is running (the GUI thread's qasync loop, a notebook), the job
    runs on a thread of its own and this call waits for it: a second loop cannot run there.
    """
    if asyncio_running():
        failure: list[BaseException] = []

        def apart() -> None:
            try:
                run_on_own_loop(coro)
            except BaseException as exc:  # handed back to the caller's thread
                failure.append(exc)

        thread = threading.Thread(target=apart, name="dmdesk-job-loop")
        thread.start()
        thread.join()
        if failure:
            raise failure[0]
        return
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(coro)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


def asyncio_running() -> bool:
    """Whether this thread already runs an asyncio loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@dataclass
class _Result:
    chunk: Chunk
    questions: list[str]


class GenerationJob(RunJob):
    active = RunStatus.GENERATING

    def _reset_state(self) -> None:
        self._pacer: Pacer | None = None  # the generator's, when it paces its calls
        self.processed = 0
        self.total = 0
        self.pairs = 0
        self._failure: BaseException | None = None
        # Resume hint: every row below `resume_row` is known processed. Kept from the snapshot,
        # advanced only over rows skipped as done or committed here (see _resume_row).
        self._start_row = 0
        self._frontier = 0  # the lowest row the producer has neither handed out nor skipped
        self._inflight: set[int] = set()
        self._generator: Any = None
        self.ledger = Ledger()  # the session's tokens, cost and budget
        self._stop: asyncio.Future[BaseException] | None = None
        self._snapshot = RunSnapshot()

    # -- entry ---------------------------------------------------------------------------------

    def run(self) -> RunView:
        self._reset_state()
        heartbeat = self.heartbeat()
        try:
            with heartbeat:
                self._heartbeat = heartbeat
                run_on_own_loop(self._main())
                if self.processed >= self.total and self._failure is None:
                    self._assess_quality()
        except LostRun:
            log.warning("run %s: no longer ours; stopping without touching it", self.run_id)
            return self.get_run()
        except BaseException as exc:
            self._set_failure(exc)
        if heartbeat.lost.is_set() or isinstance(self._failure, LostRun):
            return self.get_run()
        if self._failure is not None:
            return self._fail(self._failure)
        return self._finish()

    def _set_failure(self, exc: BaseException) -> None:
        """The first failure is the run's; losing the run overrides any (nothing is written)."""
        if self._failure is None or isinstance(exc, LostRun):
            self._failure = exc

    # -- the async part ------------------------------------------------------------------------

    async def _main(self) -> None:
        snapshot = self._snapshot = self._load_snapshot()
        self._start_row = self._frontier = snapshot.resume_row or 0
        batch_mode = snapshot.llm_mode == "batch"
        self.ledger = Ledger(
            snapshot.llm_model, budget_usd=self.ctx.config.budget_usd, batch_priced=batch_mode
        )
        n_questions = snapshot.need(snapshot.questions_per_chunk, "number of questions per chunk")
        concurrency = snapshot.need(snapshot.generation_concurrency, "generation concurrency")
        selection = snapshot.need(snapshot.selection, "chunk selection")
        rows = selection.rows
        store = self.ctx.vector_store_factory(snapshot.vector_store_path)
        try:
            available = await asyncio.to_thread(store.row_count)
            if available < rows:
                raise DmdeskError(
                    f"The vector store now has {available} chunks but this run was started on "
                    f"{rows}; it cannot resume on a different set. Remove the run and start again."
                )
            chunks = selection.chunk_count
            done_ids = await asyncio.to_thread(self._reset_counters, chunks)
            self.report()
            if self.processed >= self.total:
                return
            generator = self.ctx.generator_factory(snapshot, self.ctx.config)
            self._pacer = getattr(generator, "pacer", None)
            self._generator = generator
            self.ledger.count(generator)
            self.ledger.check_priced()
            try:
                await self._prepare(generator)
                if hasattr(generator, "batches") and (batch_mode or snapshot.open_batches):
                    # Batches the run left open are collected whatever the mode is now
                    # (their answers are paid for); only batch mode submits new ones.
                    await BatchRound(
                        self, generator, store, snapshot, done_ids, submit=batch_mode
                    ).run()
                elif batch_mode:
                    log.warning(
                        "run %s: batch mode needs an OpenAI-compatible server; %s answers "
                        "chunk by chunk",
                        self.run_id,
                        generator.description,
                    )
                if not batch_mode or not hasattr(generator, "batches"):
                    await self._pipeline(
                        store, generator, rows, done_ids, n_questions, concurrency, chunks < rows
                    )
            finally:
                self._flush_tokens()  # the calls whose answers were not written cost too
                await generator.aclose()
        finally:
            store.close()

    async def _prepare(self, generator: Any) -> None:
        """A generator with a one-time preparation (the local model) says so in the progress
        line while it prepares (dmdesk.llm.base.prepare_model), then the line is the run's."""
        if await asyncio.to_thread(prepare_model, generator, self.report):
            self.report()

    async def _pipeline(
        self,
        store: Any,
        generator: QuestionGenerator,
        rows: int,
        done_ids: set[str],
        n_questions: int,
        concurrency: int,
        repeated_ids: bool = False,
    ) -> None:
        """Chunks flow from the store (read in a thread) through `concurrency` callers to one
        writer (database writes in a thread).

        The producer and the callers share a TaskGroup: the admin's Stop, the run lost or a
        failed write cancels them all at once. The writer stands outside it, so every answer
        that came back is written, even after a failure. A failed call or the budget stops the
        callers from taking new chunks; the calls in flight come back (within
        `FAILURE_GRACE_S` after a failure) and are written."""
        work: asyncio.Queue[Chunk | None] = asyncio.Queue(maxsize=concurrency * 2)
        results: asyncio.Queue[_Result | None] = asyncio.Queue()
        feed = store.iter_chunks(
            rows,
            skip_ids=done_ids,
            batch_size=READ_BATCH,
            start_row=self._start_row,
            once_per_id=repeated_ids,
        )
        writer = asyncio.create_task(self._write_loop(results))
        with self.stop_signal():
            try:
                async with asyncio.TaskGroup() as group:
                    stopper = group.create_task(self.until_stopped())
                    producer = group.create_task(self._produce(feed, rows, work, concurrency))
                    callers = [
                        group.create_task(self._call(generator, work, results, n_questions))
                        for _ in range(concurrency)
                    ]
                    await self._await_callers(callers)
                    producer.cancel()  # a failure or the budget may have stopped the callers
                    stopper.cancel()
            except BaseExceptionGroup as errors:
                first = errors.exceptions[0]
                self._set_failure(first.reason if isinstance(first, Stopped) else first)
            finally:
                results.put_nowait(None)
                await writer  # every finished chunk is written, even after a failure
        if self.ledger.reached is not None:
            self._set_failure(self.ledger.reached)
        if isinstance(self._failure, LostRun):
            raise self._failure

    async def _produce(
        self, feed: Any, rows: int, work: asyncio.Queue[Chunk | None], callers: int
    ) -> None:
        # The read runs in a thread that a cancel cannot interrupt: the frontier moves only
        # when a batch is received here, never past rows that were not handed out.
        while (item := await asyncio.to_thread(next, feed, None)) is not None:
            batch, next_row = item
            self._inflight.update(c.row for c in batch)
            self._frontier = next_row
            for chunk in batch:
                await work.put(chunk)
        self._frontier = rows  # every row was handed out or skipped as done
        for _ in range(callers):
            await work.put(None)

    async def _call(
        self,
        generator: QuestionGenerator,
        work: asyncio.Queue[Chunk | None],
        results: asyncio.Queue[_Result | None],
        n_questions: int,
    ) -> None:
        """One caller: chunks from `work` to answers in `results`, until the work ends, a call
        fails (then no caller takes another chunk) or the budget is reached."""
        while (chunk := await work.get()) is not None:
            if self._failure is not None or self.ledger.next_call_passes(chunk.text, n_questions):
                return
            self.ledger.calls_in_flight += 1
            try:
                questions = await generator.generate(chunk.text, n_questions)
            except Exception as exc:  # what retries did not fix (LLMError) or a bug
                self._set_failure(exc)
                return
            finally:
                self.ledger.calls_in_flight -= 1
            self.ledger.calls_done += 1
            results.put_nowait(_Result(chunk, questions))

    async def _await_callers(self, callers: list[asyncio.Task[None]]) -> None:
        """Until every caller has ended. After a failure the calls still in flight have
        `FAILURE_GRACE_S` to come back (they are paid for: their answers are written), then
        they are cancelled (a hanging server must not hold the run)."""
        loop = asyncio.get_running_loop()
        pending: set[asyncio.Task[None]] = set(callers)
        deadline: float | None = None
        while pending:
            if self._failure is not None and deadline is None:
                deadline = loop.time() + FAILURE_GRACE_S
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            done, pending = await asyncio.wait(
                pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                for caller in pending:
                    caller.cancel()
                return

    # -- stopping ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def stop_signal(self) -> Iterator[None]:
        """While the pipeline runs, a thread turns the admin's Stop (a threading.Event set by
        the window or a signal handler) or the heartbeat's lost ownership into `_stop`, at
        once: nothing on the event loop polls for them."""
        loop = asyncio.get_running_loop()
        self._stop = loop.create_future()
        done = threading.Event()

        def wait() -> None:
            while not done.is_set():
                if self.cancel.wait(0.25) or self._heartbeat.lost.is_set():
                    lost = self.handover.is_set() or self._heartbeat.lost.is_set()
                    reason: BaseException = LostRun() if lost else Cancelled()
                    with contextlib.suppress(RuntimeError):  # the loop has closed: too late
                        loop.call_soon_threadsafe(self._stop_with, reason)
                    return

        threading.Thread(target=wait, name=f"stop-watch-{self.run_id}", daemon=True).start()
        try:
            yield
        finally:
            done.set()

    def _stop_with(self, reason: BaseException) -> None:
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(reason)

    async def until_stopped(self) -> None:
        assert self._stop is not None
        raise Stopped(await self._stop)

    async def _write_loop(self, results: asyncio.Queue[_Result | None]) -> None:
        ended = False
        hinted = time.monotonic()  # when the resume row was last written
        while not ended:
            first = await results.get()
            batch: list[_Result] = []
            if first is None:
                ended = True
            else:
                batch.append(first)
            while len(batch) < WRITE_BATCH_MAX and not results.empty():
                item = results.get_nowait()
                if item is None:
                    ended = True
                    break
                batch.append(item)
            if not batch:
                continue
            rows = {r.chunk.row for r in batch}
            hint = None
            if time.monotonic() - hinted >= RESUME_HINT_EVERY_S:
                hint = max(self._start_row, min((self._inflight - rows) | {self._frontier}))
                hinted = time.monotonic()
            try:
                await asyncio.to_thread(self._write, batch, hint)
            except Exception as exc:  # LostRun, or the database failing: stop everything
                self._set_failure(exc)
                self._stop_with(exc)
                return
            self._inflight -= rows
            self.report()

    # -- database ------------------------------------------------------------------------------

    def _load_snapshot(self) -> RunSnapshot:
        with session_scope(self.ctx.sessions) as s:
            run = s.get(TrainingRun, self.run_id)
            if run is None or run.status != RunStatus.GENERATING or run.owner != self.ctx.owner:
                raise LostRun()
            snapshot = run.settings or RunSnapshot()
        snapshot.need(snapshot.selection, "chunk selection")
        return snapshot

    def _reset_counters(self, chunks: int) -> set[str]:
        """Processed chunks and pair counts from the table's truth (FR-3.4, FR-3.6). `chunks`
        is the run's number of distinct chunk ids (rows that repeat an id are one chunk)."""
        with session_scope(self.ctx.sessions) as s:
            done_ids = set(
                s.scalars(
                    select(TrainingPair.chunk_id)
                    .distinct()
                    .where(TrainingPair.training_run_id == self.run_id)
                )
            )
            pairs = s.scalar(
                select(func.count())
                .select_from(TrainingPair)
                .where(TrainingPair.training_run_id == self.run_id)
            )
            self.total, self.processed, self.pairs = chunks, len(done_ids), int(pairs or 0)
            run = s.get(TrainingRun, self.run_id)
            if run is not None:
                self.ledger.set_earlier(run.prompt_tokens or 0, run.completion_tokens or 0)
            self.guarded(
                s, total_chunks=self.total, processed_chunks=self.processed, pair_count=self.pairs
            )
        return done_ids

    def _write(self, batch: list[_Result], resume_row: int | None = None) -> None:
        """A batch of answers with the tokens counted since the last write — and, when given,
        the run's resume row (so that a session killed with -9 resumes near where it died,
        without reading every chunk id below it)."""
        prompt, completion, upto = self.ledger.unwritten()
        settings = (
            None
            if resume_row is None
            else self._snapshot.model_copy(update={"resume_row": resume_row})
        )
        self.commit([(r.chunk.id, r.questions) for r in batch], prompt, completion, settings)
        self.ledger.written(upto)

    def commit(
        self,
        answered: list[tuple[str, list[str]]],
        prompt_tokens: int,
        completion_tokens: int,
        settings: RunSnapshot | None = None,
    ) -> None:
        """One transaction: each answered chunk's pairs, the run's counters and tokens, and its
        settings when given (a crash leaves whole chunks or nothing). Blocking."""
        now = self.ctx.clock()
        rows = [
            {
                "training_run_id": self.run_id,
                "chunk_id": chunk_id,
                "question": q,
                "approved": None,
                "created_at": now,
            }
            for chunk_id, questions in answered
            for q in questions
        ]
        values: dict[str, Any] = {} if settings is None else {"settings": settings}
        with session_scope(self.ctx.sessions) as s:
            self.guarded(
                s,
                processed_chunks=TrainingRun.processed_chunks + len(answered),
                pair_count=TrainingRun.pair_count + len(rows),
                prompt_tokens=TrainingRun.prompt_tokens + prompt_tokens,
                completion_tokens=TrainingRun.completion_tokens + completion_tokens,
                **values,
            )
            if rows:
                s.execute(insert(TrainingPair), rows)
        self.processed += len(answered)
        self.pairs += len(rows)

    def _usage_so_far(self) -> str | None:
        """This session's tokens and cost, live (the run's earlier sessions are in its row),
        and the run's whole cost as this session's calls so far predict it."""
        return self.ledger.usage_text(self.total - self.processed - self.ledger.calls_in_flight)

    def _flush_tokens(self) -> None:
        prompt, completion, upto = self.ledger.unwritten()
        if not (prompt or completion):
            return
        try:
            self.guarded_write(
                prompt_tokens=TrainingRun.prompt_tokens + prompt,
                completion_tokens=TrainingRun.completion_tokens + completion,
            )
        except LostRun:
            return  # another process has the run: its tokens are not ours to write
        except Exception:  # the database is gone: the run fails for that reason, not this one
            log.warning("run %s: could not record %s tokens", self.run_id, prompt + completion)
            return
        self.ledger.written(upto)

    def _resume_row(self) -> int:
        """The lowest row not known to be done: rows below the producer's frontier were either
        skipped (they had pairs) or handed out; of those handed out, the ones still in flight
        are not done. Never below where this session started."""
        return max(self._start_row, min(self._inflight | {self._frontier}))

    def report(self, message: str = "", extra: int = 0) -> None:
        """Progress: the chunks written (and `extra` answered but not written yet: a batch's
        requests), with the pace and the usage unless `message` says something else."""
        pacer = self._pacer
        if not message and pacer is not None and pacer.requests:
            pace = pacer.report()
            message = f"{pace.requests_per_min:.0f} requests/min"
            if pace.throttled:
                message += " — slowed down: the LLM is rate-limiting"
            usage = self._usage_so_far()
            if usage:
                message += f" · {usage}"
        self.emit(
            ProgressUpdate(
                run_id=self.run_id,
                phase="generation",
                processed=min(self.total, self.processed + extra),
                total=self.total,
                pair_count=self.pairs,
                message=message,
            )
        )

    def _assess_quality(self) -> None:
        """Flag weak pairs (dmdesk.services.quality) before the run becomes `generated`. A
        failure is logged, never fatal: the pairs then stay unflagged."""
        if not self.ctx.config.quality_filters:
            return

        try:
            assess_run(self.ctx, self.run_id, self.report, self.cancel)
        except Cancelled:
            raise
        except Exception as exc:
            log.warning("run %s: quality filters skipped: %s", self.run_id, exc)

    def _finish(self) -> RunView:
        if self.processed < self.total:
            return self._fail(DmdeskError("Generation ended before every chunk was done."))
        return self.end(RunStatus.GENERATED)

    def _fail(self, exc: BaseException) -> RunView:
        if isinstance(exc, DmdeskError):
            reason = exc.message
        else:
            log.error("run %s: unexpected error", self.run_id, exc_info=exc)
            reason = f"Unexpected error ({type(exc).__name__}: {exc}). Proceed to retry."
        where = f"Generation stopped at {self.processed}/{self.total} chunks"
        message = f"{where}: {reason}" if not isinstance(exc, Cancelled) else f"{where}. {reason}"
        recorded = self.get_run().settings or RunSnapshot()
        settings = recorded.model_copy(update={"resume_row": self._resume_row()})
        return self.end(
            RunStatus.GENERATING_FAILED, error_message=message[:4000], settings=settings
        )
