"""DeepMemorySettingsResponse and the FR-6 cloud gate; settings updates; secrets."""

from __future__ import annotations

from pathlib import Path

import keyring
import pytest

from dmdesk import secrets
from dmdesk.config import config_file, load_config
from dmdesk.domain.errors import InvalidSettings
from dmdesk.services.settings import get_settings, update_settings


@pytest.mark.parametrize(
    ("path", "backend", "is_cloud", "available"),
    [
        ("hub://org/kb", "deeplake", True, True),
        ("/data/kb", "deeplake", False, False),  # FR-6 / SC-7: available == is_cloud
        (None, "deeplake", False, False),
        ("/data/kb", "local", False, True),
        ("hub://org/kb", "local", True, True),
    ],
)
def test_fr6_settings_response_carries_is_cloud_and_availability(
    monkeypatch: pytest.MonkeyPatch, path, backend, is_cloud, available
) -> None:
    if path:
        monkeypatch.setenv("DMDESK_VECTOR_STORE_PATH", path)
    monkeypatch.setenv("DMDESK_DEEP_MEMORY_BACKEND", backend)
    resp = get_settings(load_config())
    assert resp.is_cloud is is_cloud
    assert resp.available is available
    assert resp.deep_memory_backend == backend
    if not available:
        assert resp.unavailable_reason


def test_unavailable_reason_explains_the_cloud_requirement(monkeypatch) -> None:
    monkeypatch.setenv("DMDESK_VECTOR_STORE_PATH", "/data/kb")
    reason = get_settings(load_config()).unavailable_reason
    assert "only available with DeepLake Cloud" in reason
    assert "DMDESK_DEEP_MEMORY_BACKEND=local" in reason


def test_update_settings_validates_then_saves(tmp_path: Path) -> None:
    cfg = update_settings(load_config(), {"questions_per_chunk": 3, "llm_model": "m-1"})
    assert cfg.questions_per_chunk == 3 and cfg.llm_model == "m-1"
    assert load_config().questions_per_chunk == 3  # persisted in the TOML file
    assert 'llm_model = "m-1"' in config_file().read_text()


@pytest.mark.parametrize(
    "changes",
    [
        {"questions_per_chunk": 0},
        {"questions_per_chunk": -1},
        {"questions_per_chunk": 10_000},
        {"generation_concurrency": 0},
        {"llm_model": "   "},
        {"deep_memory_backend": "cloudy"},
        {"stale_after_s": 0},
        {"embedding": "word2vec"},
        {"no_such_setting": 1},
    ],
)
def test_invalid_settings_are_refused_and_nothing_is_written(changes: dict) -> None:
    with pytest.raises(InvalidSettings):
        update_settings(load_config(), changes)
    assert not config_file().exists()


def test_invalid_environment_value_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("DMDESK_GENERATION_CONCURRENCY", "lots")
    with pytest.raises(InvalidSettings, match="DMDESK_GENERATION_CONCURRENCY"):
        load_config()


def test_environment_wins_over_the_file(monkeypatch) -> None:
    update_settings(load_config(), {"llm_model": "from-file"})
    monkeypatch.setenv("DMDESK_LLM_MODEL", "from-env")
    assert load_config().llm_model == "from-env"


def test_secrets_come_from_env_then_keyring(monkeypatch) -> None:
    assert secrets.get_secret(secrets.OPENAI_API_KEY) is None
    secrets.set_secret(secrets.OPENAI_API_KEY, "sk-from-ring")
    assert secrets.get_secret(secrets.OPENAI_API_KEY) == "sk-from-ring"
    assert get_settings(load_config()).llm_key_configured is True
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    assert secrets.get_secret(secrets.OPENAI_API_KEY) == "sk-from-env"


def test_a_broken_keyring_reads_as_absent_and_says_where_else(monkeypatch) -> None:
    class Broken(keyring.backend.KeyringBackend):
        priority = 1  # type: ignore[assignment]

        def get_password(self, *a):  # type: ignore[override]
            raise keyring.errors.NoKeyringError("no backend")

        def set_password(self, *a):  # type: ignore[override]
            raise keyring.errors.NoKeyringError("no backend")

        def delete_password(self, *a):  # type: ignore[override]
            raise keyring.errors.NoKeyringError("no backend")

    keyring.set_keyring(Broken())
    assert secrets.get_secret(secrets.ACTIVELOOP_TOKEN) is None
    with pytest.raises(secrets.SecretStoreUnavailable, match="ACTIVELOOP_TOKEN environment"):
        secrets.set_secret(secrets.ACTIVELOOP_TOKEN, "tok")
