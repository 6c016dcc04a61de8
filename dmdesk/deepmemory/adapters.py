"""Saved query adapters of the local engine, and which one is active for which store.

An adapter is `<data dir>/adapters/run-<id>.npz` (the matrix W) plus a JSON sidecar naming the
store and the embedding it belongs to. `active.json` maps a store path to the run whose model
`dmdesk search --deep-memory` and `dmdesk evaluate` use — a local adapter, or a DeepLake Cloud run
(whose model lives on DeepLake) — set only by the activation guard or the admin. Writes are atomic
(temp + rename).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dmdesk.embeddings import normalise


@dataclass(frozen=True)
class Adapter:
    run_id: int
    matrix: NDArray[np.float32]
    vector_store_path: str
    embedding: str

    def apply(self, queries: NDArray[np.float32]) -> NDArray[np.float32]:
        return normalise(queries @ self.matrix.T)


def _dir(data_dir: Path) -> Path:
    return Path(data_dir) / "adapters"


def store_key(store_path: str) -> str:
    """How a store is named in the sidecars: hub:// as given, a local path resolved."""
    return store_path if store_path.startswith("hub://") else str(Path(store_path).resolve())


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def save_adapter(
    data_dir: Path,
    run_id: int,
    matrix: NDArray[np.float32],
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
            "vector_store_path": store_key(store_path),
            "embedding": embedding,
            "metrics": metrics,
        },
    )
    return path


def _read_active(data_dir: Path) -> dict[str, int]:
    try:
        data = json.loads((_dir(data_dir) / "active.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def activate(data_dir: Path, run_id: int | None, store_path: str) -> None:
    """Make `run_id`'s model the one used for the store (None: no Deep Memory). Models are kept,
    so switching is instant and survives restarts."""
    d = _dir(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    active = _read_active(data_dir)
    if run_id is None:
        active.pop(store_key(store_path), None)
    else:
        active[store_key(store_path)] = run_id
    _write_json(d / "active.json", active)


def active_run(data_dir: Path, store_path: str | None) -> int | None:
    """The run whose model is in use for the store (either backend), or None."""
    if not store_path:
        return None
    value = _read_active(data_dir).get(store_key(store_path))
    return int(value) if isinstance(value, int) else None


def active_runs(data_dir: Path) -> frozenset[int]:
    """Every run whose model is in use for some store."""
    return frozenset(v for v in _read_active(data_dir).values() if isinstance(v, int))


def has_adapter(data_dir: Path, run_id: int) -> bool:
    return (_dir(data_dir) / f"run-{run_id}.npz").is_file()


def load_adapter(data_dir: Path, run_id: int) -> Adapter | None:
    d = _dir(data_dir)
    try:
        meta = json.loads((d / f"run-{run_id}.json").read_text())
        with np.load(d / f"run-{run_id}.npz") as z:
            matrix = z["matrix"]
    except (OSError, KeyError, ValueError):
        return None
    return Adapter(run_id, matrix, meta["vector_store_path"], meta["embedding"])


def active_adapter(data_dir: Path, store_path: str | None) -> Adapter | None:
    run_id = active_run(data_dir, store_path)
    return None if run_id is None else load_adapter(data_dir, run_id)
