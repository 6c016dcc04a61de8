"""Settings that cannot break: every value round-trips through the file, a line break is
refused before anything is written, and a file that cannot be read is never overwritten unless
the admin chooses to replace it (then it is kept as a backup)."""

from __future__ import annotations

import pytest

from dmdesk.config import SettingsFileBroken, config_file, load_config
from dmdesk.domain.errors import InvalidSettings
from dmdesk.services.settings import update_settings

AWKWARD = ['with "quotes"', "back\\slash\\", "ünïcødé — ✓", "hash # not a comment", "'single'"]


@pytest.mark.parametrize("value", AWKWARD)
@pytest.mark.parametrize("field", ["llm_model", "vector_store_path"])
def test_every_string_setting_round_trips_awkward_values(field: str, value: str) -> None:
    if field == "vector_store_path":
        value = "hub://org/" + value  # a cloud path need not exist here
    update_settings(load_config(), {field: value})
    assert getattr(load_config(), field) == value
    update_settings(load_config(), {"questions_per_chunk": 4})  # a second save keeps it
    assert getattr(load_config(), field) == value


def test_numbers_booleans_and_removal_round_trip() -> None:
    update_settings(
        load_config(),
        {"budget_usd": 12.5, "chunk_limit": 7, "llm_mode": "batch", "llm_base_url": "http://h/v1"},
    )
    cfg = load_config()
    assert (cfg.budget_usd, cfg.chunk_limit, cfg.llm_mode) == (12.5, 7, "batch")
    update_settings(cfg, {"chunk_limit": None})
    assert load_config().chunk_limit is None and load_config().budget_usd == 12.5


@pytest.mark.parametrize("bad", ["gpt-4o-mini\nx", "a\rb", "tab\there", "nul\x00"])
def test_a_control_character_is_refused_with_the_field_and_nothing_is_written(bad: str) -> None:
    update_settings(load_config(), {"questions_per_chunk": 2})
    before = config_file().read_bytes()
    with pytest.raises(InvalidSettings, match=r"llm_model .*a setting is one line of text"):
        update_settings(load_config(), {"llm_model": bad})
    assert config_file().read_bytes() == before
    assert load_config().questions_per_chunk == 2  # the file still reads


def test_a_broken_file_names_its_line_and_survives_a_save_byte_for_byte() -> None:
    path = config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    broken = b'questions_per_chunk = 3\nllm_model = "gpt-4o-mini\nx"\n'
    path.write_bytes(broken)
    with pytest.raises(SettingsFileBroken, match="line 2") as err:
        load_config()
    assert str(path) in str(err.value) and "backup" in str(err.value)
    cfg = load_config(use_file=False)
    with pytest.raises(SettingsFileBroken):
        update_settings(cfg, {"llm_model": "m-2"})
    assert path.read_bytes() == broken
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left either


def test_replacing_a_broken_file_keeps_it_as_a_backup() -> None:
    path = config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"llm_model = \n")
    update_settings(load_config(use_file=False), {"llm_model": "m-3"}, replace_broken=True)
    assert load_config().llm_model == "m-3"
    backups = [p for p in path.parent.iterdir() if p.name.startswith("config.toml.broken-")]
    assert len(backups) == 1 and backups[0].read_bytes() == b"llm_model = \n"
