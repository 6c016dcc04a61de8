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

import keyring
import keyring.backend
import pytest

from dmdesk.config import DmdeskConfig, load_config
from dmdesk.services.context import ServiceContext, build_context
from dmdesk.services.runs import TrainingRunService
from dmdesk.testing.llm_server import FakeLLMServer
from dmdesk.vectorstore.service import create_local_store

ENV_PREFIXES = ("DMDESK_",)
ENV_SECRETS = ("OPENAI_API_KEY", "ACTIVELOOP_TOKEN", "OPENAI_BASE_URL")


class MemoryKeyring(keyring.backend.KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.store.pop((service, username), None)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for key in list(os.environ):
        if key.startswith(ENV_PREFIXES) or key in ENV_SECRETS:
            monkeypatch.delenv(key, raising=False)
    data = tmp_path / "data"
    monkeypatch.setenv("DMDESK_DATA_DIR", str(data))
    monkeypatch.setenv("DMDESK_CONFIG_FILE", str(tmp_path / "config.toml"))
    ring = MemoryKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(ring)
    yield data
    keyring.set_keyring(previous)


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
def llm_server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


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


def chunk_ids(n: int) -> list[str]:
    return [f"chunk-{i:05d}" for i in range(n)]


def chunk_texts(n: int) -> list[str]:
    return [
        f"Chunk {i:05d}: the knowledge base explains topic number {i} in detail." for i in range(n)
    ]


@pytest.fixture
def store200(store_factory: Callable[[int], Path]) -> Path:
    return store_factory(200)


@pytest.fixture
def configure(
    monkeypatch: pytest.MonkeyPatch, llm_server: FakeLLMServer
) -> Callable[..., DmdeskConfig]:
    """Set DMDESK_* variables (name=value, None unsets) and load the configuration."""

    def apply(**env: object) -> DmdeskConfig:
        defaults = {
            "llm_base_url": llm_server.base_url,
            "llm_model": "test-model",
            "deep_memory_backend": "local",
            "llm_max_retries": 0,
            "stale_after_s": 30,
            # the test server's toy questions say nothing about quality (see dmdesk_env);
            # tests of the quality filters turn them on
            "quality_filters": False,
        }
        for key, value in (defaults | env).items():
            name = f"DMDESK_{key.upper()}"
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, str(value))
        return load_config()

    return apply


@pytest.fixture
def make_ctx(configure: Callable[..., DmdeskConfig]) -> Iterator[Callable[..., ServiceContext]]:
    made: list[ServiceContext] = []

    def build(**env: object) -> ServiceContext:
        ctx = build_context(configure(**env))
        made.append(ctx)
        return ctx

    yield build
    for ctx in made:
        ctx.dispose()


@pytest.fixture
def ctx(make_ctx: Callable[..., ServiceContext], store200: Path) -> ServiceContext:
    return make_ctx(vector_store_path=store200)


@pytest.fixture
def runs(ctx: ServiceContext) -> TrainingRunService:
    return TrainingRunService(ctx)
