"""Black-box: the `dmdesk` command in real processes, against a local DeepLake store, SQLite and
the test LLM server (issue 2's acceptance, DESIGN.md CLI contract)."""

from __future__ import annotations

import json
import subprocess
import time

from dmdesk.testing.llm_server import FakeLLMServer
from tests.conftest import chunk_ids

RUN_KEYS = {
    "id",
    "status",
    "total_chunks",
    "processed_chunks",
    "pair_count",
    "error_message",
    "deeplake_job_id",
    "created_at",
    "updated_at",
    "metrics",
}


def as_json(proc: subprocess.CompletedProcess[str]):
    return json.loads(proc.stdout)


def test_blackbox_fail_refuse_proceed_remove(cli, llm_server: FakeLLMServer) -> None:
    llm_server.configure(fail_after=120)
    gen = cli("generate", "--wait", "--json")
    assert gen.returncode == 1, gen.stderr
    run = as_json(gen)
    assert run["status"] == "generating_failed"
    assert run["processed_chunks"] == 120 and run["total_chunks"] == 200
    assert "Traceback" not in gen.stderr and "failed" in gen.stderr

    refused = cli("generate")
    assert refused.returncode == 3
    assert f"Run #{run['id']} is generating_failed" in refused.stderr

    not_failed_yet = cli("remove", str(run["id"] + 1), "--yes")
    assert not_failed_yet.returncode == 4

    llm_server.configure(fail_after=None)
    llm_server.reset_stats()
    done = cli("proceed", str(run["id"]), "--wait", "--json")
    assert done.returncode == 0, done.stderr
    final = as_json(done)
    assert final["status"] == "generated"
    assert (final["processed_chunks"], final["pair_count"]) == (200, 200)
    assert llm_server.stats.requests == 80  # only the chunks without pairs

    listing = cli("review", str(run["id"]), "--list", "--json").stdout.splitlines()
    pairs = [json.loads(line) for line in listing]
    assert sorted(p["chunk_id"] for p in pairs) == chunk_ids(200)  # every chunk exactly once

    assert cli("review", str(run["id"]), "--approve", str(pairs[0]["id"])).returncode == 0
    removed = cli("remove", str(run["id"]), "--yes")
    assert removed.returncode == 3  # generated with an approved pair: trained, not removed
    assert "1 approved pair(s)" in removed.stderr
    assert as_json(cli("run", str(run["id"]), "--json"))["pair_count"] == 200
    assert len(cli("review", str(run["id"]), "--list", "--json").stdout.splitlines()) == 200


def test_remove_of_a_failed_run_deletes_it(cli, llm_server: FakeLLMServer) -> None:
    llm_server.configure(fail_after=10)
    run = as_json(cli("generate", "--wait", "--json"))
    assert cli("remove", str(run["id"])).returncode == 2  # no --yes, no terminal: refused
    gone = cli("remove", str(run["id"]), "--yes")
    assert gone.returncode == 0, gone.stderr
    assert cli("run", str(run["id"])).returncode == 4
    assert as_json(cli("runs", "--json")) == []


def test_json_shapes_and_exit_codes(cli, llm_server: FakeLLMServer) -> None:
    assert as_json(cli("runs", "--json")) == []
    missing = cli("generate", extra_env={"DMDESK_VECTOR_STORE_PATH": "/nonexistent/kb"})
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert as_json(cli("runs", "--json")) == []  # nothing created
    settings = as_json(cli("settings", "--json"))
    assert settings["is_cloud"] is False and settings["available"] is True
    run = as_json(cli("generate", "--wait", "--json"))
    assert set(run) >= RUN_KEYS
    listed = as_json(cli("runs", "--json"))
    assert [r["id"] for r in listed] == [run["id"]] and set(listed[0]) >= RUN_KEYS

    assert cli("run", "999").returncode == 4
    assert cli("run", "abc").returncode == 2
    assert cli("proceed", str(run["id"])).returncode == 3  # generated: nothing to proceed
    assert cli("train", str(run["id"])).returncode == 3  # no approved pair yet
    assert cli("review", str(run["id"])).returncode == 2  # no action given
    assert cli("nonsense").returncode == 2
    bad = cli("runs", extra_env={"DMDESK_QUESTIONS_PER_CHUNK": "0"})
    assert bad.returncode == 2 and "DMDESK_QUESTIONS_PER_CHUNK" in bad.stderr
    gated = cli("generate", extra_env={"DMDESK_DEEP_MEMORY_BACKEND": "deeplake"})
    assert gated.returncode == 3 and "DeepLake Cloud" in gated.stderr
    for proc in (bad, gated, missing):
        assert "Traceback" not in proc.stderr


def test_generate_without_wait_runs_in_a_background_process(cli, llm_server) -> None:
    started = cli("generate", "--json")
    assert started.returncode == 0, started.stderr
    run_id = as_json(started)["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = as_json(cli("run", str(run_id), "--json"))
        if run["status"] != "generating":
            break
        time.sleep(0.3)
    assert run["status"] == "generated" and run["pair_count"] == 200


def test_generate_review_train_search_end_to_end(cli, llm_server) -> None:
    """The store has no embedding tensor: the local engine embeds chunks and questions with the
    configured embedding (the test server's), trains, and the run completes with metrics."""
    run = as_json(cli("generate", "--wait", "--json"))
    assert cli("review", str(run["id"]), "--approve-all").returncode == 0
    trained = cli("train", str(run["id"]), "--wait", "--json")
    assert trained.returncode == 0, trained.stderr
    done = as_json(trained)
    assert done["status"] == "completed"
    assert {"before", "after"} <= set(done["metrics"])
    m = done["metrics"]
    # 200 pairs split by chunk: about 40 held out, never trained or validated on
    assert 25 <= m["heldout_pairs"] <= 55 and m["evaluated_on"] == "held-out pairs"
    assert m["train_pairs"] + m["validation_pairs"] + m["heldout_pairs"] == 200
    if not done["model_active"]:  # the guard did not see a gain: the admin may still choose
        assert cli("search", "topic number 17", "--deep-memory").returncode == 3
        assert cli("activate", str(run["id"])).returncode == 0
    hits = as_json(cli("search", "topic number 17", "-k", "3", "--deep-memory", "--json"))
    assert len(hits) == 3 and set(hits[0]) == {"id", "score", "text"}
    assert cli("generate", "--json").returncode == 0  # completed: a new run may start


def test_train_refused_states_and_unknown_run(cli) -> None:
    assert cli("train", "42").returncode == 4
    assert cli("search", "x", "--deep-memory").returncode == 3  # no adapter yet
    assert cli("search", "  ").returncode == 2
