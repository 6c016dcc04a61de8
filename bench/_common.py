"""Shared pieces of the benchmarks: the LLM test server in its own process (so the client's CPU
is measured alone), stores of N chunks, and service contexts on a temporary data dir."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dmdesk.config import load_config
from dmdesk.services.context import ServiceContext, build_context
from dmdesk.vectorstore.service import create_local_store

CACHE = Path(tempfile.gettempdir()) / "dmdesk-bench"


class ServerProcess:
    def __init__(self, latency_s: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dmdesk.testing.llm_server", "--latency", str(latency_s)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.base_url = self.proc.stdout.readline().strip()  # type: ignore[union-attr]

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        req = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"{}")

    def configure(self, **knobs: Any) -> None:
        self._post("/_control", knobs)

    def reset(self) -> None:
        self._post("/_reset", {})

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.base_url + "/_stats", timeout=10) as r:
            return json.loads(r.read())

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait()


def store_of(n: int) -> Path:
    """A local store of n chunks (built once, cached in the temp dir)."""
    path = CACHE / f"store-{n}"
    if not (path / "dataset_meta.json").is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        create_local_store(
            tmp,
            [f"c{i:06d}" for i in range(n)],
            [
                f"Chunk {i}: the knowledge base explains topic {i} in some detail, "
                "with enough words to look like a real paragraph of a manual."
                for i in range(n)
            ],
            overwrite=True,
        )
        tmp.rename(path)
    return path


def context(store: Path, base_url: str, **settings: Any) -> ServiceContext:
    """A context on a fresh data dir. The quality filters are off unless asked for: they are a
    phase of their own after generation (embedding every chunk and question), and the
    generation benchmarks measure generation."""
    settings.setdefault("quality_filters", False)
    data = Path(tempfile.mkdtemp(prefix="dmdesk-bench-"))
    os.environ["DMDESK_CONFIG_FILE"] = str(data / "config.toml")
    config = load_config(
        data_dir=data,
        vector_store_path=str(store),
        llm_base_url=base_url,
        llm_model="bench",
        deep_memory_backend="local",
        llm_max_retries=0,
        **settings,
    )
    return build_context(config)


def median_of(n: int, fn: Callable[[], float]) -> tuple[float, list[float]]:
    values = [fn() for _ in range(n)]
    return statistics.median(values), values


def line(name: str, value: str, target: str, ratio: float | None = None) -> None:
    r = f"  ratio {ratio:.2f}" if ratio is not None else ""
    print(f"{name:<44} {value:<24} target {target}{r}", flush=True)
