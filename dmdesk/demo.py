"""The offline demo knowledge base: Python's own reference topics (`pydoc_data.topics`, shipped
with every CPython), chunked and embedded locally, plus the settings that make the whole
workflow run with no key and no network (local embeddings, local LLM, local Deep Memory engine).

Chunks are paragraphs of a topic merged up to ~1,000 characters; ids are stable
(`pydoc:<topic>:<n>`), so rebuilding gives the same store. The store is built once, into a
temporary folder renamed into place, so an interrupted build never leaves half a store.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dmdesk.config import DEMO_PROFILE, DmdeskConfig, load_config
from dmdesk.embeddings import LocalEmbedding, release_local_model
from dmdesk.services import settings as settings_service
from dmdesk.vectorstore.service import create_local_store

TARGET_CHARS = 1000
MIN_CHARS = 200
DEMO_CHUNK_LIMIT = DEMO_PROFILE["chunk_limit"]

ProgressFn = Callable[[int, int, str], None]


def demo_store_path(config: DmdeskConfig) -> Path:
    return config.demo_store


def demo_settings(config: DmdeskConfig) -> dict[str, Any]:
    """What the demo writes to the settings file: only where the store is. The rest of the
    demo's values (local backend and embeddings, 40 chunks, concurrency 2) are the demo
    profile (dmdesk.config.DEMO_PROFILE), in force only while the demo store is the store."""
    return {"vector_store_path": str(demo_store_path(config))}


def merge_paragraphs(text: str) -> list[str]:
    """Paragraphs merged up to ~TARGET_CHARS; short leftovers are dropped unless alone."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    groups: list[list[str]] = [[]]
    size = 0
    for p in paragraphs:
        if size and size + len(p) > TARGET_CHARS:
            groups.append([])
            size = 0
        groups[-1].append(p)
        size += len(p)
    texts = ["\n\n".join(g) for g in groups if g]
    return [t for i, t in enumerate(texts) if len(t) >= MIN_CHARS or i == 0]


def demo_chunks() -> list[tuple[str, str, dict[str, Any]]]:
    import pydoc_data.topics as topics

    return [
        (f"pydoc:{name}:{n}", text, {"topic": name, "part": n})
        for name in sorted(topics.topics)
        for n, text in enumerate(merge_paragraphs(topics.topics[name]))
    ]


def build_demo_store(path: Path, progress: ProgressFn | None = None) -> int:
    """Embed the demo chunks with the local model and write the store. Returns the chunk count.
    (Most chunks fill MiniLM's 256 tokens, so sorting them by length saves nothing: measured.)"""
    import numpy as np

    chunks = demo_chunks()
    report = progress or (lambda *_: None)
    report(0, len(chunks), "Loading the local embedding model")
    embed = LocalEmbedding()
    vectors = []
    batch = 64
    for start in range(0, len(chunks), batch):
        vectors.append(embed([t for _, t, _ in chunks[start : start + batch]]))
        report(min(len(chunks), start + batch), len(chunks), "Embedding Python's reference topics")
    tmp = path.with_name(path.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    create_local_store(
        tmp,
        [i for i, _, _ in chunks],
        [t for _, t, _ in chunks],
        np.concatenate(vectors),
        [m for _, _, m in chunks],
    )
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return len(chunks)


def store_ready(config: DmdeskConfig) -> bool:
    """The demo store has been built (it appears whole, renamed into place)."""
    return (demo_store_path(config) / "dataset_meta.json").is_file()


def demo_config(config: DmdeskConfig) -> DmdeskConfig:
    """The demo's configuration for this process only, saving nothing: what the window runs
    with while the store is still being built (the settings check wants an existing store)."""
    return load_config(**demo_settings(config))


def finish_demo(config: DmdeskConfig) -> DmdeskConfig:
    """Once the store exists: make it the configured store unless another store is already
    configured (then the demo settings apply to this process only). Returns the configuration
    to use."""
    wanted = demo_settings(config)
    if config.vector_store_path in (None, str(demo_store_path(config))):
        return settings_service.update_settings(config, wanted)
    return load_config(**wanted)


def ensure_demo(config: DmdeskConfig, progress: ProgressFn | None = None) -> DmdeskConfig:
    """Build the demo store once (in this process), then `finish_demo`."""
    if not store_ready(config):
        build_demo_store(demo_store_path(config), progress)

        release_local_model()  # the window that opens next has no use for it until a job
    return finish_demo(config)
