"""Shared fixtures: real SQLite databases migrated with Alembic, real DeepLake stores on local
paths, the project's OpenAI-compatible test server on 127.0.0.1, an in-memory keyring.

Every test gets its own data dir, config file and environment; nothing reaches past 127.0.0.1.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("BUGGER_OFF", "true")

import pytest

from dmdesk.config import DmdeskConfig
from dmdesk.services.context import ServiceContext
from dmdesk.services.runs import TrainingRunService
from dmdesk.testing.llm_server import FakeLLMServer
from dmdesk.testing.plugin import chunk_ids, chunk_texts
from dmdesk.vectorstore.service import create_local_store

pytest_plugins = ("pytester",)


@pytest.fixture(autouse=True)
def isolated_env(dmdesk_isolated: Path) -> Path:
    """Every test of the project runs isolated, through the public plugin's fixture (one harness
    for the project and for testers: dmdesk.testing.plugin)."""
    return dmdesk_isolated


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    """A test must not leave job or heartbeat threads running (napari's habit)."""
    before = set(threading.enumerate())
    yield
    for t in set(threading.enumerate()) - before:
        if t.name.startswith(("heartbeat-", "job-")):
            t.join(timeout=10)
            assert not t.is_alive(), f"thread {t.name} still running after the test"


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    from tests import pg

    if not pg.available():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL binaries are missing on CI (the Makefile installs them)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    server = pg.PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind (the database-level tests run on both)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dmdesk.db'}"
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
def llm_server(dmdesk_llm_server: FakeLLMServer) -> FakeLLMServer:
    return dmdesk_llm_server


@pytest.fixture(scope="session")
def store_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    """Local DeepLake stores of n chunks, built once per size per session (read-only users)."""
    cache: dict[int, Path] = {}

    def make(n: int) -> Path:
        if n not in cache:
            path = tmp_path_factory.mktemp(f"store{n}") / "store"
            create_local_store(path, chunk_ids(n), chunk_texts(n))
            cache[n] = path
        return cache[n]

    return make


@pytest.fixture
def store200(store_factory: Callable[[int], Path]) -> Path:
    return store_factory(200)


@pytest.fixture
def configure(dmdesk_config: Callable[..., DmdeskConfig]) -> Callable[..., DmdeskConfig]:
    """Set DMDESK_* variables (name=value, None unsets) and load the configuration."""
    return dmdesk_config


@pytest.fixture
def make_ctx(dmdesk_context: Callable[..., ServiceContext]) -> Callable[..., ServiceContext]:
    return dmdesk_context


@pytest.fixture
def ctx(make_ctx: Callable[..., ServiceContext], store200: Path) -> ServiceContext:
    return make_ctx(vector_store_path=store200)


@pytest.fixture
def runs(ctx: ServiceContext) -> TrainingRunService:
    return TrainingRunService(ctx)
