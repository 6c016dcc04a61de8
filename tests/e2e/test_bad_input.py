"""Issue 6: the bad-input matrix. Every wrong command, id, setting, path or database gets a clear
message and its documented exit code, with no traceback — and changes nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from dmdesk.cli import main
from dmdesk.db import migrate
from dmdesk.services.context import ServiceContext
from tests.helpers import insert_pairs, insert_run

STATUSES = [
    "generating",
    "generated",
    "training",
    "completed",
    "generating_failed",
    "training_failed",
]


def snapshot(db: Path) -> list:
    con = sqlite3.connect(db)
    try:
        return [
            con.execute(
                "SELECT id, status, processed_chunks, pair_count, error_message "
                "FROM deep_memory_training_runs ORDER BY id"
            ).fetchall(),
            con.execute(
                "SELECT id, chunk_id, approved FROM deep_memory_training_pairs ORDER BY id"
            ).fetchall(),
        ]
    finally:
        con.close()


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def wrong_status_cases() -> list:
    """(status of the only run, command, expected exit code, message fragment)."""
    cases = []
    for s in STATUSES:
        if s not in ("generating_failed", "training_failed"):
            cases.append((s, ("proceed", "1"), 3, "only a generating_failed or training_failed"))
            if s != "generated":  # a generated run without approved pairs is removable
                cases.append((s, ("remove", "1", "--yes"), 3, "only a failed run, or a gen"))
        if s != "generated":
            cases.append((s, ("train", "1"), 3, f"Run #1 is {s}"))
        if s not in ("generated", "training_failed"):  # training_failed: review, then Proceed
            cases.append((s, ("review", "1", "--approve-all"), 3, "once generation has finished"))
            cases.append((s, ("review", "1", "--reject", "1"), 3, "once generation has finished"))
    return cases


@pytest.mark.parametrize(
    ("status", "argv", "code", "message"),
    wrong_status_cases(),
    ids=lambda v: "-".join(v) if isinstance(v, tuple) else str(v),
)
def test_commands_on_runs_in_the_wrong_status(
    capsys, ctx: ServiceContext, status: str, argv: tuple, code: int, message: str
) -> None:
    insert_run(ctx, status, owner="other-process")
    insert_pairs(ctx, 1, ["chunk-00000", "chunk-00001"])
    db = ctx.config.data_dir / "dmdesk.db"
    before = snapshot(db)
    got, text = run_cli(capsys, *argv)
    assert (got, message in text, "Traceback" in text) == (code, True, False), text
    assert snapshot(db) == before


@pytest.mark.parametrize(
    "argv",
    [
        ("run", "7"),
        ("proceed", "7"),
        ("remove", "7", "--yes"),
        ("train", "7"),
        ("review", "7", "--approve-all"),
        ("review", "7", "--list"),
    ],
)
def test_unknown_run_ids_exit_4(capsys, ctx: ServiceContext, argv: tuple) -> None:
    got, text = run_cli(capsys, *argv)
    assert got == 4 and "There is no run #7" in text and "Traceback" not in text


def test_review_of_pairs_that_are_not_the_runs(capsys, ctx: ServiceContext) -> None:
    insert_run(ctx, "generated")
    insert_pairs(ctx, 1, ["chunk-00000"])
    db = ctx.config.data_dir / "dmdesk.db"
    before = snapshot(db)
    got, text = run_cli(capsys, "review", "1", "--approve", "1", "99")
    assert got == 2 and "has no pair(s) 99" in text
    assert snapshot(db) == before


@pytest.mark.parametrize(
    ("env", "argv", "fragment"),
    [
        ({"DMDESK_QUESTIONS_PER_CHUNK": "-1"}, ("runs",), "DMDESK_QUESTIONS_PER_CHUNK"),
        ({"DMDESK_QUESTIONS_PER_CHUNK": "0"}, ("runs",), "DMDESK_QUESTIONS_PER_CHUNK"),
        ({"DMDESK_QUESTIONS_PER_CHUNK": "1000"}, ("runs",), "DMDESK_QUESTIONS_PER_CHUNK"),
        ({"DMDESK_GENERATION_CONCURRENCY": "0"}, ("runs",), "DMDESK_GENERATION_CONCURRENCY"),
        ({"DMDESK_GENERATION_CONCURRENCY": "100000"}, ("runs",), "DMDESK_GENERATION_CONCURRENCY"),
        ({"DMDESK_STALE_AFTER_S": "soon"}, ("runs",), "DMDESK_STALE_AFTER_S"),
        ({"DMDESK_DEEP_MEMORY_BACKEND": "cloudy"}, ("runs",), "DMDESK_DEEP_MEMORY_BACKEND"),
        ({"DMDESK_EMBEDDING": "word2vec"}, ("runs",), "DMDESK_EMBEDDING"),
        ({}, ("settings", "--set", "llm_model="), "the LLM model name is empty"),
        ({}, ("settings", "--set", "questions_per_chunk=-3"), "questions_per_chunk"),
        ({}, ("settings", "--set", "no_such=1"), "Unknown setting"),
        ({}, ("settings", "--set", "novalue"), "KEY=VALUE"),
        ({"DMDESK_DATABASE_URL": "nosuchdb://x"}, ("runs",), "Cannot use the database URL"),
    ],
)
def test_invalid_settings_exit_2_and_write_nothing(
    capsys, monkeypatch, ctx: ServiceContext, env: dict, argv: tuple, fragment: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    from dmdesk.config import config_file

    got, text = run_cli(capsys, *argv)
    assert got == 2 and fragment in text and "Traceback" not in text, text
    assert not config_file().exists()


@pytest.fixture
def store_cases(tmp_path: Path) -> dict[str, Path]:
    from dmdesk.vectorstore._deeplake import import_deeplake

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("not a dataset")
    ds = import_deeplake().empty(str(tmp_path / "notext"), verbose=False)
    ds.create_tensor("labels", htype="class_label")
    return {"missing": tmp_path / "missing", "plain": plain, "notext": tmp_path / "notext"}


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("missing", "does not exist"),
        ("plain", "is not a DeepLake dataset"),
        ("notext", "no 'text' tensor"),
    ],
)
def test_bad_vector_store_paths_exit_2_and_create_no_run(
    capsys, monkeypatch, make_ctx: Callable[..., ServiceContext], store_cases, case, fragment
) -> None:
    ctx = make_ctx(vector_store_path=store_cases[case])
    got, text = run_cli(capsys, "generate")
    assert got == 2 and fragment in text and "Traceback" not in text
    assert snapshot(ctx.config.data_dir / "dmdesk.db")[0] == []


def test_bad_database_files_exit_2(capsys, monkeypatch, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"garbage" * 1000)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    newer = tmp_path / "newer.db"
    migrate.upgrade(f"sqlite:///{newer}")
    con = sqlite3.connect(newer)
    con.execute("UPDATE alembic_version SET version_num = '0099'")
    con.commit()
    con.close()
    for url, fragment in (
        (f"sqlite:///{corrupt}", "Cannot open the database"),
        (f"sqlite:///{a_file}/sub/dmdesk.db", "does not exist"),
        (f"sqlite:///{newer}", "written by a newer dmdesk"),
    ):
        monkeypatch.setenv("DMDESK_DATABASE_URL", url)
        got, text = run_cli(capsys, "runs")
        assert got == 2 and fragment in text and "Traceback" not in text, (url, text)
    assert corrupt.read_bytes() == b"garbage" * 1000


def test_a_line_break_in_a_setting_is_refused_and_every_command_still_reads_the_file(
    capsys, ctx: ServiceContext
) -> None:
    from dmdesk.config import config_file

    assert run_cli(capsys, "settings", "--set", "questions_per_chunk=2")[0] == 0
    before = config_file().read_bytes()
    got, text = run_cli(capsys, "settings", "--set", "llm_model=gpt-4o-mini\nx")
    assert got == 2 and "llm_model" in text and "one line" in text, text
    assert config_file().read_bytes() == before
    assert run_cli(capsys, "runs")[0] == 0
    assert run_cli(capsys, "settings")[0] == 0


def test_a_broken_settings_file_is_named_by_line_kept_and_replaced_only_on_request(
    capsys, ctx: ServiceContext
) -> None:
    from dmdesk.config import config_file

    path = config_file()
    broken = b'questions_per_chunk = 2\nllm_model = "a\nb"\n'
    path.write_bytes(broken)
    for argv in (("runs",), ("settings",), ("settings", "--set", "llm_model=m")):
        got, text = run_cli(capsys, *argv)
        assert got == 2 and "line 2" in text and "--replace-broken-file" in text, text
        assert "Traceback" not in text
        assert path.read_bytes() == broken
    got, text = run_cli(capsys, "settings", "--set", "llm_model=m", "--replace-broken-file")
    assert got == 0, text
    assert run_cli(capsys, "runs")[0] == 0
    backups = list(path.parent.glob("config.toml.broken-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == broken
