"""The DeepLake Cloud backend at its boundary. Tests cannot reach the cloud: a stand-in plays
deeplake's VectorStore.deep_memory, and its signatures are checked against the installed
deeplake's own, so the stand-in cannot drift from the real API."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from dmdesk.deepmemory.cloud import DeepLakeCloudBackend, open_cloud_store
from dmdesk.domain.status import RunStatus
from dmdesk.services.context import ServiceContext
from dmdesk.services.runs import TrainingRunService
from tests.conftest import chunk_ids
from tests.helpers import insert_pairs, insert_run


class _Response:
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def json(self) -> dict[str, Any]:
        return self._data


class StandInClient:
    def __init__(self, dm: StandInDeepMemory) -> None:
        self.dm = dm
        self.urls: list[str] = []

    def request(
        self,
        method,
        relative_url,
        endpoint=None,
        params=None,
        data=None,
        files=None,
        json=None,
        headers=None,
        timeout=None,
    ):
        self.urls.append(f"{method} {relative_url}")
        job_id = relative_url.split("/jobs/")[1].split("/")[0]
        states = self.dm.scripts[job_id]
        state = states.pop(0) if len(states) > 1 else states[0]
        progress = {"eta": 5, "best_recall@10": 0.61}
        if state == "failed":
            progress = {"error": "worker ran out of memory", "best_recall@10": 0.55}
        return _Response({"id": job_id, "status": state, "progress": progress})


class StandInDeepMemory:
    def __init__(self, scripts: list[list[str]]) -> None:
        self.pending_scripts = scripts
        self.scripts: dict[str, list[str]] = {}
        self.trained: list[tuple[list[str], list]] = []
        self.cancelled: list[str] = []
        self.evaluated: list[tuple[list, list]] = []
        self.client = StandInClient(self)

    def train(self, queries, relevance, embedding_function=None, token=None) -> str:
        self.trained.append((list(queries), [list(r) for r in relevance]))
        job_id = f"job-{len(self.trained)}"
        self.scripts[job_id] = list(self.pending_scripts.pop(0))
        return job_id

    def cancel(self, job_id):
        self.cancelled.append(job_id)

    def evaluate(
        self,
        relevance,
        queries,
        embedding_function=None,
        embedding=None,
        top_k=(1, 3, 5, 10, 50, 100),
        qvs_params=None,
    ):
        self.evaluated.append((list(queries), list(relevance)))
        return {
            "with model": {f"recall@{k}": 0.5 + k / 100 for k in top_k},
            "without model": {f"recall@{k}": 0.3 + k / 100 for k in top_k},
        }


class StandInStore:
    def __init__(self, dm: StandInDeepMemory) -> None:
        self.deep_memory = dm


def params(fn) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


def test_the_stand_in_matches_deeplake_signatures() -> None:
    from deeplake.client.client import DeepMemoryBackendClient
    from deeplake.core.vectorstore import VectorStore
    from deeplake.core.vectorstore.deep_memory.deep_memory import DeepMemory

    assert params(StandInDeepMemory.train) == params(DeepMemory.train)
    assert params(StandInDeepMemory.cancel) == params(DeepMemory.cancel)
    assert params(StandInDeepMemory.evaluate) == params(DeepMemory.evaluate)
    assert params(StandInClient.request) == params(DeepMemoryBackendClient.request)
    # The keyword arguments dmdesk passes to VectorStore exist there.
    source = inspect.getsource(open_cloud_store)
    for kw in ("path", "token", "runtime", "embedding_function", "verbose"):
        assert f"{kw}=" in source and kw in params(VectorStore.__init__)


@pytest.fixture
def cloud(make_ctx, store200, monkeypatch):
    monkeypatch.setenv("ACTIVELOOP_TOKEN", "tok-test-1234")
    ctx: ServiceContext = make_ctx(vector_store_path="hub://org/kb", deep_memory_backend="deeplake")

    def use(scripts: list[list[str]]) -> StandInDeepMemory:
        dm = StandInDeepMemory(scripts)
        backend = DeepLakeCloudBackend(
            lambda: "tok-test-1234",
            lambda: lambda texts: None,
            open_store=lambda path, token, emb: StandInStore(dm),
            poll_interval_s=0.01,
        )
        ctx.backend_factory = lambda name, cfg: backend
        return dm

    run_id = insert_run(ctx, "generated")
    insert_pairs(ctx, run_id, chunk_ids(50), approved=True)
    insert_pairs(ctx, run_id, chunk_ids(10), approved=False)
    return ctx, TrainingRunService(ctx), run_id, use


def test_a_cloud_run_that_completes_stores_job_id_and_metrics(cloud) -> None:
    _ctx, runs, run_id, use = cloud
    dm = use([["pending", "training", "completed"]])
    runs.start_training(run_id)
    run = runs.run_job(run_id)
    assert run.status is RunStatus.COMPLETED, run.error_message
    assert run.deeplake_job_id == "job-1"
    assert run.metrics["after"]["recall@10"] == pytest.approx(0.6)
    assert run.metrics["before"]["recall@10"] == pytest.approx(0.4)
    queries, relevance = dm.trained[0]
    assert len(queries) == 40  # 80 % of the 50 approved pairs; rejected ones never sent
    assert all(len(r) == 1 and r[0][1] == 1.0 and r[0][0] in chunk_ids(50) for r in relevance)
    assert len(dm.evaluated[0][0]) == 10  # evaluated on the held-out fifth
    assert "GET /api/deepmemory/v1/jobs/job-1/status" in dm.client.urls


def test_a_cloud_job_that_fails_ends_training_failed_with_job_id_kept(cloud) -> None:
    _ctx, runs, run_id, use = cloud
    use([["pending", "failed"]])
    runs.start_training(run_id)
    run = runs.run_job(run_id)
    assert run.status is RunStatus.TRAINING_FAILED
    assert run.deeplake_job_id == "job-1"
    assert "worker ran out of memory" in run.error_message
    assert run.metrics["job"]["progress"]["best_recall@10"] == 0.55  # partial metrics kept


def test_proceed_after_a_cloud_failure_resubmits_the_same_pairs_and_completes(cloud) -> None:
    _ctx, runs, run_id, use = cloud
    dm = use([["failed"], ["training", "completed"]])
    runs.start_training(run_id)
    assert runs.run_job(run_id).status is RunStatus.TRAINING_FAILED
    runs.proceed(run_id)
    run = runs.run_job(run_id)
    assert run.status is RunStatus.COMPLETED and run.deeplake_job_id == "job-2"
    (q1, r1), (q2, r2) = dm.trained
    assert q1 == q2 and r1 == r2


def test_no_deep_memory_access_is_explained(cloud) -> None:
    _ctx, runs, run_id, use = cloud
    dm = use([["completed"]])

    class DeepMemoryAccessError(Exception):
        pass

    def refuse(*a, **k):
        raise DeepMemoryAccessError("no access")

    dm.train = refuse  # type: ignore[method-assign]
    runs.start_training(run_id)
    run = runs.run_job(run_id)
    assert run.status is RunStatus.TRAINING_FAILED
    assert "no access to Deep Memory" in run.error_message
    assert run.deeplake_job_id is None


def test_stopping_a_cloud_run_cancels_the_job(cloud) -> None:
    import threading

    _ctx, runs, run_id, use = cloud
    dm = use([["training"] * 1000])
    cancel = threading.Event()
    runs.start_training(run_id)

    def stop_soon(u) -> None:
        if "eta" in u.message:
            cancel.set()

    run = runs.run_job(run_id, stop_soon, cancel)
    assert run.status is RunStatus.TRAINING_FAILED and "Stopped" in run.error_message
    assert dm.cancelled == ["job-1"] and run.deeplake_job_id == "job-1"


def test_a_stale_cloud_run_with_a_job_id_is_reattached_not_failed(cloud) -> None:
    """Its process died while DeepLake trained: the job is followed again, not re-submitted."""
    from sqlalchemy import update

    from dmdesk.db.models import TrainingRun
    from tests.helpers import long_ago

    ctx, runs, run_id, use = cloud
    dm = use([])
    dm.scripts["job-77"] = ["training", "completed"]
    with ctx.engine.begin() as c:
        c.execute(
            update(TrainingRun).values(
                status="training",
                deeplake_job_id="job-77",
                heartbeat_at=long_ago(600),
                owner="dead:1:x",
                settings={
                    "vector_store_path": "hub://org/kb",
                    "selection": {"rows": 200},
                    "deep_memory_backend": "deeplake",
                },
            )
        )
    (recovered,) = runs.recover_stale()
    assert recovered.status is RunStatus.TRAINING and recovered.error_message is None
    assert recovered.settings["attach_job_id"] == "job-77"
    run = runs.run_job(run_id)
    assert run.status is RunStatus.COMPLETED and run.deeplake_job_id == "job-77"
    assert dm.trained == []  # nothing re-submitted
    assert run.metrics["after"]["recall@10"] == pytest.approx(0.6)


def test_a_stale_local_training_run_is_failed_not_reattached(make_ctx, store200) -> None:
    from tests.helpers import long_ago

    ctx = make_ctx(vector_store_path=store200)
    run_id = insert_run(ctx, "training", heartbeat=long_ago(600), job_id=None)
    (recovered,) = TrainingRunService(ctx).recover_stale()
    assert recovered.id == run_id and recovered.status is RunStatus.TRAINING_FAILED
