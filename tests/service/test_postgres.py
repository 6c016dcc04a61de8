"""The service layer on PostgreSQL: the same rules as on SQLite (issue 6). The racing-start
test runs on both databases in test_runs.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dmdesk.domain.errors import GenerationBlocked
from dmdesk.domain.status import RunStatus
from dmdesk.jobs.runner import run_job
from dmdesk.services.context import ServiceContext
from dmdesk.services.runs import TrainingRunService
from dmdesk.testing.llm_server import FakeLLMServer
from tests.conftest import chunk_ids
from tests.helpers import chunk_pair_counts, pair_count


@pytest.fixture
def pg_ctx(make_ctx: Callable[..., ServiceContext], postgres: Any, store200) -> ServiceContext:
    return make_ctx(vector_store_path=store200, database_url=postgres.new_database())


def test_fail_resume_remove_on_postgresql(pg_ctx: ServiceContext, llm_server: FakeLLMServer):
    runs = TrainingRunService(pg_ctx)
    llm_server.configure(fail_after=70)
    run = run_job(runs.ctx, runs.start_generation().id)
    assert run.status is RunStatus.GENERATING_FAILED and run.processed_chunks == 70
    with pytest.raises(GenerationBlocked):
        runs.start_generation()
    llm_server.configure(fail_after=None)
    runs.proceed(run.id)
    done = run_job(runs.ctx, run.id)
    assert done.status is RunStatus.GENERATED
    assert chunk_pair_counts(pg_ctx, run.id) == dict.fromkeys(chunk_ids(200), 1)
    assert (done.processed_chunks, done.pair_count) == (200, 200)


def test_remove_cascades_on_postgresql(pg_ctx: ServiceContext, llm_server: FakeLLMServer):
    runs = TrainingRunService(pg_ctx)
    llm_server.configure(fail_after=40)
    run = run_job(runs.ctx, runs.start_generation().id)
    assert pair_count(pg_ctx, run.id) == 40
    runs.remove(run.id)
    assert pair_count(pg_ctx) == 0 and runs.list_runs() == []
