"""Issue 16: the command line keeps its promises, tried as a new user would — real `dmdesk`
processes, a real DeepLake store, SQLite and the test LLM server. (Ctrl-C / SIGTERM during
`--wait` is tests/e2e/test_interrupt.py.)"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from dmdesk.testing.cli import dmdesk_env, run_dmdesk
from dmdesk.testing.llm_server import FakeLLMServer
from tests.e2e.conftest import Cli
from tests.e2e.test_retrieval_cli import beir_folder


def as_json(proc: subprocess.CompletedProcess[str]):
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def wait_until(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# -- no dead ends ------------------------------------------------------------------------------


def test_a_generated_run_with_every_pair_rejected_can_be_removed_then_generate(cli) -> None:
    run = as_json(cli("generate", "--wait", "--json"))
    pairs = [
        json.loads(line)
        for line in cli("review", str(run["id"]), "--list", "--json").stdout.splitlines()
    ]
    ids = [str(p["id"]) for p in pairs]
    assert cli("review", str(run["id"]), "--reject", *ids).returncode == 0
    blocked = cli("generate")
    assert blocked.returncode == 3 and "delete it" in blocked.stderr
    assert cli("train", str(run["id"])).returncode == 3
    removed = cli("remove", str(run["id"]), "--yes")
    assert removed.returncode == 0, removed.stderr
    assert cli("run", str(run["id"])).returncode == 4
    again = cli("generate", "--wait", "--json")
    assert again.returncode == 0, again.stderr
    assert as_json(again)["id"] > run["id"]  # run ids are never reused


def test_approve_all_leaves_rejections_alone_unless_forced(cli) -> None:
    run = as_json(cli("generate", "--wait", "--json"))
    rid = str(run["id"])
    first = [
        json.loads(line)["id"]
        for line in cli("review", rid, "--list", "--json").stdout.splitlines()
    ][:5]
    assert cli("review", rid, "--reject", *map(str, first)).returncode == 0
    out = cli("review", rid, "--approve-all")
    assert "Approved 195 pairs" in out.stdout
    assert as_json(cli("run", rid, "--json"))["approved_count"] == 195
    forced = cli("review", rid, "--approve-all", "--force")
    assert "Approved 5 pairs" in forced.stdout
    assert as_json(cli("run", rid, "--json"))["approved_count"] == 200


def test_run_ids_increase_after_a_removal_and_job_logs_are_not_shared(
    cli, llm_server: FakeLLMServer, tmp_path: Path
) -> None:
    llm_server.configure(fail_after=10, fail_status=401)
    failed = as_json(cli("generate", "--wait", "--json"))
    assert failed["status"] == "generating_failed"
    assert cli("remove", str(failed["id"]), "--yes").returncode == 0
    llm_server.configure(fail_after=None)
    nxt = as_json(cli("generate", "--wait", "--json"))
    assert nxt["id"] == failed["id"] + 1


# -- logs that explain -------------------------------------------------------------------------


def test_a_failed_background_job_writes_its_error_to_its_job_log(
    cli, llm_server: FakeLLMServer, tmp_path: Path
) -> None:
    llm_server.configure(fail_after=20, fail_status=401)
    started = as_json(cli("generate", "--json"))
    rid = started["id"]
    wait_until(lambda: as_json(cli("run", str(rid), "--json"))["status"] != "generating")
    run = as_json(cli("run", str(rid), "--json"))
    assert run["status"] == "generating_failed"
    log = tmp_path / "data" / "logs" / f"job-{rid}.log"
    wait_until(lambda: "generating_failed" in log.read_text())
    text = log.read_text()
    assert "401" in text or "API key" in text, text
    assert f"run #{rid}: generating_failed" in text
    # …and dmdesk.log tells the run's story in one line per change.
    story = (tmp_path / "data" / "logs" / "dmdesk.log").read_text()
    assert f"run {rid}: started generating" in story
    assert f"run {rid}: generating → generating_failed" in story


def test_an_unexpected_error_is_logged_with_its_traceback_and_the_path_is_printed(
    cli, tmp_path: Path
) -> None:
    """A bug is simulated in a real dmdesk process (its `runs` service raises); what the user
    sees and what the log keeps are the real thing."""
    code = (
        "import sys\n"
        "from dmdesk.services import runs\n"
        "def boom(self):\n"
        "    raise RuntimeError('a bug in listing runs')\n"
        "runs.TrainingRunService.list_runs = boom\n"
        "from dmdesk.cli import main\n"
        "sys.exit(main(['runs']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=cli.env,  # type: ignore[attr-defined]
        capture_output=True,
        text=True,
        timeout=60,
    )
    log = tmp_path / "data" / "logs" / "dmdesk.log"
    assert proc.returncode == 1
    assert "unexpected error: RuntimeError: a bug in listing runs" in proc.stderr
    assert str(log) in proc.stderr and "Traceback" not in proc.stderr
    text = log.read_text()
    assert "unexpected error in `dmdesk runs`" in text
    assert "Traceback" in text and "a bug in listing runs" in text


def test_debug_works_anywhere_on_the_line(cli) -> None:
    assert cli("runs", "--debug").returncode == 0
    assert cli("--debug", "runs").returncode == 0


# -- settings ----------------------------------------------------------------------------------


def test_settings_set_takes_several_pairs_and_saves_them_typed(cli, tmp_path: Path) -> None:
    env = {"DMDESK_GENERATION_CONCURRENCY": "", "DMDESK_QUESTIONS_PER_CHUNK": ""}  # empty: not set
    out = cli(
        "settings",
        "--set",
        "questions_per_chunk=3",
        "stale_after_s=45",
        "llm_timeout_s=12.5",
        extra_env=env,
    )
    assert out.returncode == 0, out.stderr
    saved = tomllib.loads((tmp_path / "config.toml").read_text())
    assert saved["questions_per_chunk"] == 3 and isinstance(saved["questions_per_chunk"], int)
    assert saved["stale_after_s"] == 45.0 and isinstance(saved["stale_after_s"], float)
    assert saved["llm_timeout_s"] == 12.5
    shown = cli("settings", "--json", extra_env=env)
    data = json.loads(shown.stdout)
    assert data["questions_per_chunk"] == 3 and data["llm_timeout_s"] == 12.5
    assert "llm_max_retries" in data


def test_settings_warn_when_the_environment_wins_and_refuse_out_of_range(cli) -> None:
    # the fixture sets DMDESK_LLM_MODEL in the environment
    out = cli("settings", "--set", "llm_model=other-model")
    assert out.returncode == 0 and "DMDESK_LLM_MODEL is set in the environment" in out.stderr
    bad = cli("settings", "--set", "questions_per_chunk=25")
    assert bad.returncode == 2 and "less than or equal to 20" in bad.stderr
    url = cli("settings", "--set", "llm_base_url=not a url")
    assert url.returncode == 2 and "not an http:// or https:// URL" in url.stderr
    missing = cli("settings", "--set", "vector_store_path=/no/such/store")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_settings_help_lists_every_key_with_type_and_range(cli) -> None:
    from dmdesk.config import EDITABLE_FIELDS

    text = cli("settings", "--help").stdout
    for key in EDITABLE_FIELDS:
        assert key in text, key
    assert "questions_per_chunk" in text and "≤ 20" in text


def test_settings_say_who_writes_the_questions(tmp_path: Path) -> None:
    env = dmdesk_env(tmp_path) | {"HOME": str(tmp_path), "OPENAI_API_KEY": ""}
    text = run_dmdesk(env, "settings", timeout=60).stdout
    assert text.startswith("question writer")
    assert "not used: no API key or URL" in text


# -- synopsis = behaviour ----------------------------------------------------------------------


def test_help_hides_the_internal_job_command(cli) -> None:
    text = cli("--help").stdout
    assert "_job" not in text and "generate" in text


def test_run_follow_follows_a_background_run_to_its_end(cli, llm_server) -> None:
    llm_server.configure(latency_s=0.3)  # ~8 s of generation: still running when followed
    rid = as_json(cli("generate", "--json"))["id"]
    followed = cli("run", str(rid), "--follow")
    assert followed.returncode == 0, followed.stderr
    assert f"Run #{rid}: generated" in followed.stdout
    assert "generation:" in followed.stderr  # progress lines (not a terminal here)


def test_wait_without_a_terminal_prints_progress_lines(cli) -> None:
    out = cli("generate", "--wait")
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("generation:")]
    assert lines and lines[-1].startswith("generation: 200/200 chunks")


def test_small_input_mistakes_get_their_own_messages(cli, tmp_path: Path) -> None:
    neg = cli("review", "1", "--approve", "-5")
    assert neg.returncode == 2 and "pair id" in neg.stderr
    folder = tmp_path / "empty-folder"
    folder.mkdir()
    imp = cli("import", str(folder))
    assert imp.returncode == 2 and "folder without corpus.jsonl" in imp.stderr
    nodir = cli("runs", extra_env={"DMDESK_DATABASE_URL": f"sqlite:///{tmp_path}/no/such/dir/x.db"})
    assert nodir.returncode == 2 and "does not exist" in nodir.stderr
    assert not (tmp_path / "no").exists()
    refused = cli(
        "runs",
        extra_env={"DMDESK_DATABASE_URL": "postgresql+psycopg://u:secret@127.0.0.1:9/dmdesk"},
    )
    assert refused.returncode == 2 and "database server at 127.0.0.1:9" in refused.stderr
    assert "secret" not in refused.stderr and "is a dmdesk database" not in refused.stderr
    for proc in (neg, imp, nodir, refused):
        assert "Traceback" not in proc.stderr


# -- imports and searches check the model first ------------------------------------------------


@pytest.fixture
def imported(tmp_path: Path, run_cli: Cli) -> Cli:
    beir_folder(tmp_path)
    assert run_cli("import", str(tmp_path)).returncode == 0  # a BEIR folder: its corpus.jsonl
    return run_cli


def test_an_import_with_another_embedding_model_is_refused_and_changes_nothing(
    imported, tmp_path: Path
) -> None:
    store = tmp_path / "imported-store"
    before = tree_digest(store)
    more = tmp_path / "more.jsonl"
    more.write_text("\n".join(json.dumps({"_id": f"n{i}", "text": f"new {i}"}) for i in range(9)))
    out = imported("import", str(more), extra_env={"DMDESK_EMBEDDING": "local"})
    assert out.returncode == 2, out.stderr
    assert "embeddings are" in out.stderr and "DMDESK_EMBEDDING=local" in out.stderr
    assert tree_digest(store) == before  # byte for byte
    assert imported("search", "w1 w2").returncode == 0  # still searchable


def test_evaluate_and_search_with_another_model_say_so(imported, tmp_path: Path) -> None:
    local = {"DMDESK_EMBEDDING": "local"}
    ev = imported(
        "evaluate", str(tmp_path / "queries.jsonl"), str(tmp_path / "qrels.tsv"), extra_env=local
    )
    assert ev.returncode == 2 and "embeddings are" in ev.stderr, ev.stderr
    se = imported("search", "w1", "--deep-memory", extra_env=local)
    assert se.returncode in (2, 3) and "unexpected" not in se.stderr, se.stderr
    for proc in (ev, se):
        assert "Traceback" not in proc.stderr and "matmul" not in proc.stderr


def test_smoke_works_without_the_gui_command(cli) -> None:
    """The README's synopsis `dmdesk [gui] [--smoke]`: the command is optional."""
    out = cli("--smoke", extra_env={"QT_QPA_PLATFORM": "offscreen"})
    assert out.returncode == 0, out.stderr
    assert "window shown" in out.stdout


def test_review_list_is_a_table_a_person_reads_and_json_lines_with_json(cli) -> None:
    """Issue 26: `review N --list` printed raw JSON lines though --json is the documented way
    to ask for them."""
    run = as_json(cli("generate", "--wait", "--json"))
    rid = str(run["id"])
    pairs = [
        json.loads(line) for line in cli("review", rid, "--list", "--json").stdout.splitlines()
    ]
    assert cli("review", rid, "--approve", str(pairs[0]["id"])).returncode == 0
    table = cli("review", rid, "--list").stdout.splitlines()
    assert table[0].split() == ["id", "verdict", "question", "chunk"]
    first = next(line for line in table if line.split()[0] == str(pairs[0]["id"]))
    assert "approved" in first and pairs[0]["chunk_id"] in first
    assert pairs[0]["question"][:20] in first
    assert not any(line.startswith("{") for line in table)
    assert table[-1].startswith(f"{len(pairs)} pairs: 1 approved, 0 rejected")
