"""No token ever lands in the database, the log files, the settings file or any message: write
token-like secrets, make calls fail in every way that reports an error, then grep everything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dmdesk.testing.cli import dmdesk_env
from dmdesk.testing.llm_server import FakeLLMServer

OPENAI_SECRET = "sk-proj-SECRETopenai0123456789abcdef"
ACTIVELOOP_SECRET = "eyJSECRETactiveloop0123456789.abcdef"


def test_no_secret_reaches_the_database_logs_or_messages(
    tmp_path: Path, store200: Path, llm_server: FakeLLMServer
) -> None:
    env = dmdesk_env(
        tmp_path,
        vector_store_path=store200,
        deep_memory_backend="local",
        llm_base_url=llm_server.base_url,
        llm_max_retries=0,
    ) | {
        "OPENAI_API_KEY": OPENAI_SECRET,
        "ACTIVELOOP_TOKEN": ACTIVELOOP_SECRET,
        "HOME": str(tmp_path),
    }
    outputs: list[str] = []

    def cli(*args: str, extra: dict[str, str] | None = None) -> int:
        p = subprocess.run(
            [sys.executable, "-m", "dmdesk", "--debug", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env | (extra or {}),
            stdin=subprocess.DEVNULL,
        )
        outputs.append(p.stdout + p.stderr)
        return p.returncode

    llm_server.configure(fail_after=5, fail_status=401)  # the key is refused mid-run
    assert cli("generate", "--wait") == 1
    assert cli("settings", "--json", "--set", "llm_model=other") == 0
    run_id = "1"
    llm_server.configure(fail_after=None)
    assert cli("proceed", run_id, "--wait") == 0
    assert cli("review", run_id, "--approve-all") == 0
    llm_server.configure(fail_after=0, fail_status=500)  # embeddings are not affected, LLM is
    # A cloud path with the token set: opening fails (no network here) with a message.
    assert (
        cli(
            "generate",
            extra={
                "DMDESK_VECTOR_STORE_PATH": "hub://org/kb",
                "DMDESK_DEEP_MEMORY_BACKEND": "deeplake",
            },
        )
        != 0
    )
    assert cli("train", run_id, "--wait") in (0, 1)
    assert cli("run", run_id, "--json") == 0

    haystack = "\n".join(outputs)
    for path in tmp_path.rglob("*"):
        if path.is_file() and "store" not in path.parts[-3:-1]:
            haystack += path.read_bytes().decode("utf-8", errors="replace")
    assert (tmp_path / "data" / "dmdesk.db").is_file()
    assert (tmp_path / "data" / "logs" / "dmdesk.log").is_file()
    for secret in (OPENAI_SECRET, ACTIVELOOP_SECRET):
        assert secret not in haystack
        assert secret[:16] not in haystack
