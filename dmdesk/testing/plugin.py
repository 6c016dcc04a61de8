"""dmdesk as a pytest plugin: drive the real window with pytest-qt in a few lines.

Installed with `pip install dmdesk[test]` and loaded by pytest through the `pytest11` entry point
(no conftest needed). The fixtures, all on 127.0.0.1 and a temporary folder:

* `dmdesk_isolated` — a fresh data dir, settings file and SQLite database under `tmp_path`; every
  `DMDESK_*` variable and API key of the environment removed; an in-memory keyring. Nothing reads
  or writes the user's own configuration. Every other fixture here uses it.
* `dmdesk_llm_server` — the OpenAI-compatible test server (`dmdesk.testing.llm_server`) with its
  knobs: `configure(latency_s=…, fail_after=…, fail_times=…, fail_mode="status"|"malformed"|
  "empty"|"drop"|"hang", fail_status=…, retry_after=…, questions_per_reply=…,
  embeddings_status=…)`; `stats` counts requests.
* `dmdesk_store(texts, ids=None, embeddings=None)` — a local DeepLake store built from texts.
* `dmdesk_config(**settings)` — sets `DMDESK_<NAME>` for the test and returns the configuration
  (defaults: the test server as LLM, the local Deep Memory engine, no retries, quality filters
  off — the test server's toy questions say nothing about quality).
* `dmdesk_context(**settings)` — a service context on that configuration (disposed after).
* `dmdesk_window(chunks=20, texts=None, ctx=None, **settings)` — the real main window on all of
  that, shown, returned as a :class:`dmdesk.ui.test_driver.WindowDriver`; closed cleanly after
  the test, and the test fails if a QThread is still running then.

The driver waits instead of sleeping: `wait_for_status(run_id, "generated")` (the database *and*
the History row agree), `wait_for_progress(value)`, `wait_for_row_text(run_id, text)`; and acts as
a person would: `click(name)`, `expand_row(run_id)`, `press_row_button(run_id, "proceedButton")`,
`answer("confirmRemoveBox", "Yes")`. Widgets are found by the object names of
:data:`dmdesk.testing.names.OBJECT_NAMES`, a contract (README "Testing dmdesk with pytest-qt").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import keyring
import keyring.backend
import pytest

ENV_SECRETS = ("OPENAI_API_KEY", "ACTIVELOOP_TOKEN", "OPENAI_BASE_URL")
DEFAULT_WAIT_MS = 60_000


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring that lives for one test (headless machines have no Secret Service)."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # keyring's base is untyped
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.store.pop((service, username), None)


def chunk_texts(n: int) -> list[str]:
    """The default texts of a test store: distinct, with words the test server's embedding uses."""
    return [
        f"Chunk {i:05d}: the knowledge base explains topic number {i} in detail." for i in range(n)
    ]


def chunk_ids(n: int) -> list[str]:
    return [f"chunk-{i:05d}" for i in range(n)]


@pytest.fixture
def dmdesk_isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("BUGGER_OFF", "true")
    for key in list(os.environ):
        if key.startswith("DMDESK_") or key in ENV_SECRETS:
            monkeypatch.delenv(key, raising=False)
    data = tmp_path / "data"
    monkeypatch.setenv("DMDESK_DATA_DIR", str(data))
    monkeypatch.setenv("DMDESK_CONFIG_FILE", str(tmp_path / "config.toml"))
    ring = MemoryKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(ring)
    yield data
    keyring.set_keyring(previous)


@pytest.fixture
def dmdesk_llm_server(dmdesk_isolated: Path) -> Iterator[Any]:
    # late: pytest loads this plugin in every session; its parts only when used
    from dmdesk.testing.llm_server import FakeLLMServer

    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def dmdesk_store(dmdesk_isolated: Path, tmp_path: Path) -> Callable[..., Path]:
    # late: pytest loads this plugin in every session; its parts only when used
    from dmdesk.vectorstore.service import create_local_store

    made = [0]

    def build(
        texts: Sequence[str], ids: Sequence[str] | None = None, embeddings: Any = None
    ) -> Path:
        made[0] += 1
        path = tmp_path / f"store-{made[0]}"
        create_local_store(path, list(ids or chunk_ids(len(texts))), list(texts), embeddings)
        return path

    return build


@pytest.fixture
def dmdesk_config(
    dmdesk_isolated: Path, dmdesk_llm_server: Any, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    # late: pytest loads this plugin in every session; its parts only when used
    from dmdesk.config import load_config

    def apply(**settings: object) -> Any:
        defaults = {
            "llm_base_url": dmdesk_llm_server.base_url,
            "llm_model": "test-model",
            "deep_memory_backend": "local",
            "llm_max_retries": 0,
            "stale_after_s": 30,
            "quality_filters": False,
            # One pair per chunk keeps a test's counts plain; the product's default is 3.
            "questions_per_chunk": 1,
        }
        for key, value in (defaults | settings).items():
            name = f"DMDESK_{key.upper()}"
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, str(value))
        return load_config()

    return apply


@pytest.fixture
def dmdesk_context(dmdesk_config: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    # late: pytest loads this plugin in every session; its parts only when used
    from dmdesk.services.context import build_context

    made: list[Any] = []

    def build(**settings: object) -> Any:
        ctx = build_context(dmdesk_config(**settings))
        made.append(ctx)
        return ctx

    yield build
    for ctx in made:
        ctx.dispose()


@pytest.fixture
def dmdesk_window(
    request: pytest.FixtureRequest,
    dmdesk_context: Callable[..., Any],
    dmdesk_store: Callable[..., Path],
) -> Iterator[Callable[..., Any]]:
    qtbot = request.getfixturevalue("qtbot")
    opened: list[Any] = []

    def open_window(
        chunks: int = 20, texts: Sequence[str] | None = None, ctx: Any = None, **settings: Any
    ) -> Any:
        # late: pytest loads this plugin in every session; its parts only when used
        from dmdesk.ui.main_window import MainWindow
        from dmdesk.ui.test_driver import WindowDriver

        if ctx is None:
            texts = list(texts) if texts is not None else chunk_texts(chunks)
            settings.setdefault("vector_store_path", dmdesk_store(texts))
            ctx = dmdesk_context(**settings)
            ids = chunk_ids(len(texts))
        else:
            ids = []
        window = MainWindow(ctx)
        window.ask_before_stopping = False
        qtbot.addWidget(window)
        with qtbot.waitExposed(window, timeout=5_000):
            window.show()

        # Keys reach a window's shortcuts (F5, Ctrl+Q) only when it is the active window. A
        # desktop's window manager activates a new window; a bare X server (xvfb-run, CI) has
        # none, so the window asks for the input focus itself, as a user's click would give it.
        def active() -> bool:
            if not window.isActiveWindow():
                window.activateWindow()  # again: X may have dropped a request (a focus race)
            return window.isActiveWindow()

        qtbot.waitUntil(active, timeout=5_000)
        driver = WindowDriver(qtbot, window, ctx, ids)
        opened.append(driver)
        return driver

    yield open_window
    # late: pytest loads this plugin in every session; its parts only when used
    from dmdesk.ui import aio

    try:
        for driver in opened:
            if not driver.close():
                pytest.fail("a QThread of the dmdesk window was still running after the test")
    finally:
        aio.release()  # the next test (GUI or not) starts without a running asyncio loop
