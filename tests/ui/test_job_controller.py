"""The window's job lifecycle in one object (issue 24): what a JobController says, in order,
for a job that completes, one the admin stops, and a request the service refuses — on a real
database, a local store, the project's LLM server and a real QThread."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject

from dmdesk.domain.status import RunStatus
from dmdesk.services.context import ServiceContext
from dmdesk.services.runs import TrainingRunService
from dmdesk.testing.llm_server import FakeLLMServer
from dmdesk.ui.jobs import JobController


def _record(jobs: JobController) -> list[tuple[Any, ...]]:
    said: list[tuple[Any, ...]] = []
    jobs.started.connect(lambda phase, run_id: said.append(("started", phase, run_id)))
    jobs.run_started.connect(lambda run: said.append(("run_started", run.id)))
    jobs.progress_changed.connect(lambda done, *_: said.append(("progress", done)))
    jobs.refused.connect(lambda message: said.append(("refused", message)))
    jobs.ended.connect(
        lambda final, stopped, handed: said.append(("ended", final, stopped, handed))
    )
    return said


def test_a_job_says_it_started_then_its_run_then_progress_and_ends_last(
    qtbot, ctx: ServiceContext, llm_server: FakeLLMServer
) -> None:
    parent = QObject()
    jobs = JobController(ctx, parent)
    said = _record(jobs)
    with qtbot.waitSignal(jobs.ended, timeout=60_000):
        assert jobs.start("generation", lambda runs: runs.start_generation())
        assert jobs.running
        assert not jobs.start("generation", lambda runs: runs.start_generation())  # one at a time
    kinds = [s[0] for s in said]
    assert kinds[:2] == ["started", "run_started"] and kinds[-1] == "ended"
    assert "progress" in kinds and "refused" not in kinds
    _, final, stopped, handed_over = said[-1]
    assert final.status is RunStatus.GENERATED and not stopped and not handed_over
    assert jobs.run_id == final.id and not jobs.running
    progress = [s[1] for s in said if s[0] == "progress"]
    assert progress == sorted(progress) and progress[-1] == final.total_chunks  # the last is sent


def test_stop_ends_the_run_resumable_and_says_the_admin_stopped_it(
    qtbot, ctx: ServiceContext, llm_server: FakeLLMServer
) -> None:
    llm_server.configure(latency_s=0.05)
    parent = QObject()  # owns the controller for the test
    jobs = JobController(ctx, parent)
    said = _record(jobs)
    jobs.progress_changed.connect(lambda *_: jobs.stop())
    with qtbot.waitSignal(jobs.ended, timeout=60_000):
        jobs.start("generation", lambda runs: runs.start_generation())
    _, final, stopped, handed_over = said[-1]
    assert final.status is RunStatus.GENERATING_FAILED and final.stopped_by_admin
    assert stopped and not handed_over
    assert not jobs.stop()  # nothing runs any more


def test_a_refused_request_says_why_and_ends_with_no_run(
    qtbot, ctx: ServiceContext, llm_server: FakeLLMServer
) -> None:
    TrainingRunService(ctx).start_generation()  # a run not completed blocks the next (FR-2)
    parent = QObject()  # owns the controller for the test
    jobs = JobController(ctx, parent)
    said = _record(jobs)
    with qtbot.waitSignal(jobs.ended, timeout=30_000):
        jobs.start("generation", lambda runs: runs.start_generation())
    assert [s[0] for s in said] == ["started", "refused", "ended"]
    assert "Run #1" in said[1][1]
    assert said[-1][1:] == (None, False, False)
