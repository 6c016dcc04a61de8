"""Running the `dmdesk` command as a separate process, for black-box tests and benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def dmdesk_env(root: Path, **settings: Any) -> dict[str, str]:
    """This process's environment without any DMDESK_ variable, plus a data dir and settings
    file under `root` and the given settings (`llm_base_url="…"` → DMDESK_LLM_BASE_URL).

    The quality filters are off unless asked for (`quality_filters=True`): the test LLM server's
    toy questions and hashed word embeddings say nothing about question quality, so tests of
    other features would otherwise depend on arbitrary verdicts. One question per chunk unless
    asked for (`questions_per_chunk=None` leaves the product's default, 3): counts stay plain.
    A setting given as None is left out of the environment."""
    settings.setdefault("quality_filters", False)
    settings.setdefault("questions_per_chunk", 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMDESK_")}
    env["DMDESK_DATA_DIR"] = str(root / "data")
    env["DMDESK_CONFIG_FILE"] = str(root / "config.toml")
    for key, value in settings.items():
        if value is not None:
            env[f"DMDESK_{key.upper()}"] = str(value)
    return env


def run_dmdesk(
    env: dict[str, str],
    *args: str,
    timeout: float = 300,
    module: str = "dmdesk",
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )
