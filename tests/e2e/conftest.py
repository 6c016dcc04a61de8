"""Fixtures of the black-box tests: the `dmdesk` command in real processes, each test with its
own data dir and settings file (never the user's)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from dmdesk.testing.cli import dmdesk_env, run_dmdesk
from dmdesk.testing.llm_server import FakeLLMServer

Cli = Callable[..., subprocess.CompletedProcess[str]]


def _runner(env: dict[str, str], default_timeout: float) -> Cli:
    def run(*args: str, extra_env: dict[str, str] | None = None, timeout: float = default_timeout):
        return run_dmdesk(env | (extra_env or {}), *args, timeout=timeout)

    run.env = env  # type: ignore[attr-defined]
    return run


@pytest.fixture
def cli(tmp_path: Path, store200: Path, llm_server: FakeLLMServer) -> Cli:
    """dmdesk on the 200-chunk store, the local engine and the test LLM server (one question per
    chunk, as `dmdesk_env` sets)."""
    env = dmdesk_env(
        tmp_path,
        vector_store_path=store200,
        deep_memory_backend="local",
        llm_base_url=llm_server.base_url,
        llm_model="test-model",
        llm_max_retries=0,
    ) | {"HOME": str(tmp_path)}
    return _runner(env, 120)


@pytest.fixture
def run_cli(tmp_path: Path, llm_server: FakeLLMServer) -> Cli:
    """dmdesk on a store that `dmdesk import` creates, with the test server's embeddings."""
    env = dmdesk_env(
        tmp_path,
        vector_store_path=tmp_path / "imported-store",
        deep_memory_backend="local",
        llm_base_url=llm_server.base_url,
        embedding="openai:test-embedding",
    ) | {"HOME": str(tmp_path)}
    return _runner(env, 180)
