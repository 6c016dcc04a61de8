"""Saved query adapters of the local engine, and which one is active for which store.

An adapter is `<data dir>/adapters/run-<id>.npz` (the matrix W) plus a JSON sidecar naming the
store and the embedding it belongs to. `active.json` maps a store path to the run whose adapter
`dmdesk search --deep-memory` and `dmdesk evaluate` apply. Writes are atomic (temp + rename).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dmdesk.embeddings import normalise


@dataclass(frozen=True)
class Adapter:
    run_id: int
    matrix: np.ndarray
    vector_store_path: str
    embedding: str

    def apply(self, queries: np.ndarray) -> np.ndarray:
        return normalise(queries @ self.matrix.T)


def _dir(data_dir: Path) -> Path:
    return Path(data_dir) / "adapters"


def _key(store_path: str) -> str:
    return store_path if store_path.startswith("hub://") else str(Path(store_path).resolve())


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def save_adapter(
    data_dir: Path,
    run_id: int,
    matrix: np.ndarray,
    store_path: str,
    embedding: str,
    metrics: dict[str, Any],
) -> Path:
    d = _dir(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"run-{run_id}.npz"
    tmp = d / f"run-{run_id}.tmp.npz"
    np.savez(tmp, matrix=matrix.astype(np.float32))
    os.replace(tmp, path)
    _write_json(
        d / f"run-{run_id}.json",
        {
            "run_id": run_id,
            "vector_store_path": _key(store_path),
            "embedding": embedding,
            "metrics": metrics,
        },
    )
    return path


def activate(data_dir: Path, run_id: int, store_path: str) -> None:
    d = _dir(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    active_file = d / "active.json"
    active = json.loads(active_file.read_text()) if active_file.is_file() else {}
    active[_key(store_path)] = run_id
    _write_json(active_file, active)


def active_adapter(data_dir: Path, store_path: str | None) -> Adapter | None:
    if not store_path:
        return None
    d = _dir(data_dir)
    try:
        active = json.loads((d / "active.json").read_text())
        run_id = int(active[_key(store_path)])
        meta = json.loads((d / f"run-{run_id}.json").read_text())
        with np.load(d / f"run-{run_id}.npz") as z:
            matrix = z["matrix"]
    except (OSError, KeyError, ValueError):
        return None
    return Adapter(run_id, matrix, meta["vector_store_path"], meta["embedding"])
