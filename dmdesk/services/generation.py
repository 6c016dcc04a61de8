"""The generation job (DESIGN.md "Generation job").

1. The run's chunks are rows [0, N) of the store recorded in its settings snapshot.
2. Chunks that already have pairs in this run are skipped (one set-based query), and the counters
   are reset from the table's truth: `total_chunks` is always the whole run (51/80, never 51/30).
3. Remaining chunks go to `generation_concurrency` concurrent LLM calls (asyncio + AsyncOpenAI).
4. Each chunk's pairs are inserted together with the counter update in one transaction; results
   that finish together share a transaction (fewer fsyncs), but a chunk is never split, so a
   crash leaves whole chunks or nothing.
5. The first error that retries did not fix stops the job: in-flight calls are cancelled, the
   finished ones are still written, and the run becomes `generating_failed` with a message that
   says where it stopped. Cancel does the same with "stopped by the administrator".

Every write is conditional on the run still being ours and `generating`; if it is not (another
process recovered or took it over) the job stops and leaves the run alone.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select

from dmdesk.db.models import TrainingPair, TrainingRun
from dmdesk.db.session import session_scope
from dmdesk.domain.errors import Cancelled, DmdeskError
from dmdesk.domain.models import ProgressUpdate, RunView, describe_usage
from dmdesk.domain.status import RunStatus
from dmdesk.llm.base import QuestionGenerator, prepare_model
from dmdesk.llm.pacing import Pacer
from dmdesk.llm.pricing import cost_usd
from dmdesk.services.job import LostRun, RunJob
from dmdesk.vectorstore.service import Chunk

log = logging.getLogger(__name__)

WRITE_BATCH_MAX = 64  # finished chunks written in one transaction at most
READ_BATCH = 256  # chunk texts read from the store at once


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
        self._frontier = [0]  # advanced by the producer only over rows it has taken
        self._inflight: set[int] = set()
        self._generator: Any = None
        self._tokens_written = (0, 0)  # the generator's (prompt, completion) counts on the run

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
            return self.runs.get_run(self.run_id)
        except BaseException as exc:
            if self._failure is None:
                self._failure = exc
        if heartbeat.lost.is_set():
            return self.runs.get_run(self.run_id)
        if self._failure is not None:
            return self._fail(self._failure)
        return self._finish()

    # -- the async part ------------------------------------------------------------------------

    async def _main(self) -> None:
        snapshot = self._load_snapshot()
        self._start_row = self._frontier[0] = int(snapshot.get("resume_row") or 0)
        n_questions = int(snapshot.get("questions_per_chunk") or 1)
        concurrency = max(1, int(snapshot.get("generation_concurrency") or 1))
        rows = int(snapshot["selection"]["rows"])
        store = self.ctx.vector_store_factory(snapshot.get("vector_store_path"))
        try:
            available = await asyncio.to_thread(store.row_count)
            if available < rows:
                raise DmdeskError(
                    f"The vector store now has {available} chunks but this run was started on "
                    f"{rows}; it cannot resume on a different set. Remove the run and start again."
                )
            chunks = int(snapshot["selection"].get("chunks") or rows)
            done_ids = self._reset_counters(chunks)
            self._report()
            if self.processed >= self.total:
                return
            generator = self.ctx.generator_factory(snapshot, self.ctx.config)
            self._pacer = getattr(generator, "pacer", None)
            self._generator = generator
            try:
                await self._prepare(generator)
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
        if await asyncio.to_thread(prepare_model, generator, self._report):
            self._report()

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
        work: asyncio.Queue[Chunk | None] = asyncio.Queue(maxsize=concurrency * 2)
        results: asyncio.Queue[_Result | None] = asyncio.Queue()
        stop = asyncio.Event()

        async def produce() -> None:
            mark = [self._start_row]  # the iterator's own frontier, moved in its thread
            it = store.iter_chunks(
                rows,
                skip_ids=done_ids,
                batch_size=READ_BATCH,
                start_row=self._start_row,
                frontier=mark,
                once_per_id=repeated_ids,
            )
            while True:
                batch = await asyncio.to_thread(next, it, None)
                # The iterator is suspended here, so `mark` matches what was handed out. A next()
                # still running when the job is cancelled must not move the job's frontier past
                # rows it never handed out, so the frontier is copied only at this point.
                if batch is None:
                    self._frontier[0] = mark[0]
                    break
                self._inflight.update(c.row for c in batch)
                self._frontier[0] = mark[0]
                for chunk in batch:
                    await work.put(chunk)
            for _ in range(concurrency):
                await work.put(None)

        async def call_llm() -> None:
            while (chunk := await work.get()) is not None:
                questions = await generator.generate(chunk.text, n_questions)
                results.put_nowait(_Result(chunk, questions))

        async def guard(coro: Any) -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                if self._failure is None:
                    self._failure = exc
                stop.set()

        async def watch() -> None:
            while not stop.is_set():
                if self.cancel.is_set():
                    if self.handover.is_set():
                        self._failure = LostRun()  # another process goes on: write nothing
                    elif self._failure is None:
                        self._failure = Cancelled()
                    stop.set()
                if self._heartbeat.lost.is_set():
                    self._failure = LostRun()
                    stop.set()
                await asyncio.sleep(0.05)

        writer = asyncio.create_task(self._write_loop(results, stop))
        producer = asyncio.create_task(guard(produce()))
        callers = [asyncio.create_task(guard(call_llm())) for _ in range(concurrency)]
        watcher = asyncio.create_task(watch())
        all_calls: asyncio.Future[Any] = asyncio.gather(*callers)
        stopper: asyncio.Future[Any] = asyncio.create_task(stop.wait())
        await asyncio.wait({all_calls, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            producer.cancel()
            for c in callers:
                c.cancel()
        await asyncio.gather(producer, all_calls, return_exceptions=True)
        results.put_nowait(None)
        await writer  # writes every finished chunk, even after a failure
        stop.set()
        await asyncio.gather(watcher, stopper, return_exceptions=True)
        if isinstance(self._failure, LostRun):
            raise self._failure

    async def _write_loop(
        self, results: asyncio.Queue[_Result | None], stop: asyncio.Event
    ) -> None:
        ended = False
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
            try:
                self._write(batch)
            except LostRun as exc:
                self._failure = exc
                stop.set()
                return
            except Exception as exc:
                if self._failure is None:
                    self._failure = exc
                stop.set()
                return
            self._report()

    # -- database ------------------------------------------------------------------------------

    def _load_snapshot(self) -> dict[str, Any]:
        with session_scope(self.ctx.sessions) as s:
            run = s.get(TrainingRun, self.run_id)
            if run is None or run.status != RunStatus.GENERATING or run.owner != self.ctx.owner:
                raise LostRun()
            snapshot = dict(run.settings or {})
        if "selection" not in snapshot:
            raise DmdeskError("This run has no chunk selection recorded; remove it.")
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
            self.guarded(
                s, total_chunks=self.total, processed_chunks=self.processed, pair_count=self.pairs
            )
        return done_ids

    def _write(self, batch: list[_Result]) -> None:
        now = self.ctx.clock()
        rows = [
            {
                "training_run_id": self.run_id,
                "chunk_id": r.chunk.id,
                "question": q,
                "approved": None,
                "created_at": now,
            }
            for r in batch
            for q in r.questions
        ]
        prompt, completion, done = self._token_delta()
        with session_scope(self.ctx.sessions) as s:
            self.guarded(
                s,
                processed_chunks=TrainingRun.processed_chunks + len(batch),
                pair_count=TrainingRun.pair_count + len(rows),
                prompt_tokens=TrainingRun.prompt_tokens + prompt,
                completion_tokens=TrainingRun.completion_tokens + completion,
            )
            s.execute(insert(TrainingPair), rows)
        self._tokens_written = done
        self.processed += len(batch)
        self.pairs += len(rows)
        self._inflight.difference_update(r.chunk.row for r in batch)

    def _generator_tokens(self) -> tuple[int, int]:
        """(prompt, completion) tokens the generator has counted this session; a generator
        that counts none (the local model) has (0, 0)."""
        gen = self._generator
        return int(getattr(gen, "prompt_tokens", 0)), int(getattr(gen, "completion_tokens", 0))

    def _token_delta(self) -> tuple[int, int, tuple[int, int]]:
        """Tokens counted since the last write: (prompt, completion, new total)."""
        now = self._generator_tokens()
        return now[0] - self._tokens_written[0], now[1] - self._tokens_written[1], now

    def _usage_so_far(self) -> str | None:
        """This session's tokens and cost, live (the run's earlier sessions are in its row)."""
        prompt, completion = self._generator_tokens()
        cost = cost_usd(getattr(self._generator, "model", None), prompt, completion)
        return describe_usage(prompt, completion, cost)

    def _flush_tokens(self) -> None:
        prompt, completion, done = self._token_delta()
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
        self._tokens_written = done

    def _resume_row(self) -> int:
        """The lowest row not known to be done: rows below the producer's frontier were either
        skipped (they had pairs) or handed out; of those handed out, the ones still in flight
        are not done. Never below where this session started."""
        return max(self._start_row, min(self._inflight | {self._frontier[0]}))

    def _report(self, message: str = "") -> None:
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
                processed=self.processed,
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
        from dmdesk.services.quality import assess_run

        try:
            assess_run(self.ctx, self.run_id, self._report, self.cancel)
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
        settings = dict(self.runs.get_run(self.run_id).settings or {})
        settings["resume_row"] = self._resume_row()
        return self.end(
            RunStatus.GENERATING_FAILED, error_message=message[:4000], settings=settings
        )
