"""Issue 12: the demo's settings apply while the demo store is the store, and only then."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmdesk.config import DEMO_PROFILE, load_config


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in ("CHUNK_LIMIT", "EMBEDDING", "DEEP_MEMORY_BACKEND", "GENERATION_CONCURRENCY"):
        monkeypatch.delenv(f"DMDESK_{key}", raising=False)
    monkeypatch.setenv("DMDESK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DMDESK_CONFIG_FILE", str(tmp_path / "config.toml"))
    return tmp_path


def test_the_demo_store_brings_its_profile(data_dir: Path) -> None:
    config = load_config(vector_store_path=str(data_dir / "demo-store"))
    for key, value in DEMO_PROFILE.items():
        assert getattr(config, key) == value, key


def test_another_store_keeps_none_of_it(data_dir: Path) -> None:
    config = load_config(vector_store_path=str(data_dir / "my-store"))
    assert config.chunk_limit is None and config.embedding != "local"
    assert config.deep_memory_backend == "deeplake"


def test_what_the_admin_sets_wins_over_the_profile(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DMDESK_CHUNK_LIMIT", "7")
    config = load_config(vector_store_path=str(data_dir / "demo-store"))
    assert config.chunk_limit == 7 and config.embedding == "local"
