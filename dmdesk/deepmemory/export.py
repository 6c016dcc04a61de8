"""A local Deep Memory model in a form the admin's own RAG application loads, without dmdesk.

The local engine's model is a d×d matrix W applied to a query embedding: q' = normalise(W q);
chunk embeddings stay what the store holds. Two forms leave dmdesk:

* **sentence-transformers folder** (stores embedded with the bundled all-MiniLM-L6-v2): a
  `Router` with a *query* route = the store's encoder (Transformer, Pooling, Normalize) + a
  bias-free `Dense` holding W + `Normalize`, and a *document* route = the store's encoder
  unchanged (also the default route, so a plain `encode` reproduces the store's embeddings).
  Only sentence-transformers' own modules, so `SentenceTransformer(DEST)` loads it anywhere;
  `encode_query` / `encode_document` pick the route.
* **the transform alone** (every store, and the only form for a store embedded by an API model
  such as OpenAI's, which has no local encoder to wrap): `deep_memory.safetensors` (tensor
  `weight`, W) for three lines of numpy, and `llamaindex_adapter/` in the `LinearLayer` format
  that LlamaIndex's `AdapterEmbeddingModel` loads (`config.json` + `pytorch_model.bin`).

Both forms carry a model card (README.md) with the run, the store, the embedding, the held-out
figures and the guard's verdict, and `dmdesk_export.json` with the same facts for tools. A
folder is written beside its destination and renamed into place, so a failed export leaves
nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dmdesk.domain.errors import InvalidSettings
from dmdesk.embeddings import local_model_path

SENTENCE_TRANSFORMERS = "sentence-transformers"
TRANSFORM = "safetensors"
FORMATS = (SENTENCE_TRANSFORMERS, TRANSFORM)
TRANSFORM_FILE = "deep_memory.safetensors"
LLAMAINDEX_DIR = "llamaindex_adapter"


@dataclass(frozen=True)
class ModelFacts:
    """What the model card says about the model."""

    run_id: int
    store: str
    embedding: str
    metrics: dict[str, Any] = field(default_factory=dict)
    guard: str = ""
    in_use: bool = False


def check_destination(dest: Path) -> None:
    """A destination is a folder that does not exist yet, or an empty one (exit 2 otherwise)."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidSettings(
            f"{dest} already exists and is not an empty folder: export into a new folder."
        )


def write_model(dest: Path, matrix: NDArray[np.float32], facts: ModelFacts, fmt: str) -> Path:
    """Write the export folder `dest` in `fmt` (FORMATS); returns it."""
    if fmt not in FORMATS:
        raise InvalidSettings(f"Unknown model format {fmt!r}: use {' or '.join(FORMATS)}.")
    if fmt == SENTENCE_TRANSFORMERS and facts.embedding != "local":
        raise InvalidSettings(
            f"Run #{facts.run_id}'s store is embedded with {facts.embedding}, an API model with "
            "no local encoder to wrap: export it with --format safetensors (the transform your "
            "application applies to the API's query embeddings)."
        )
    check_destination(dest)
    dest = dest.absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        W = np.ascontiguousarray(matrix, dtype=np.float32)
        if fmt == SENTENCE_TRANSFORMERS:
            _write_sentence_transformers(work, W)
        _write_transform(work, W)
        (work / "README.md").write_text(model_card(facts, fmt, W.shape[0]), encoding="utf-8")
        (work / "dmdesk_export.json").write_text(
            json.dumps(_facts_json(facts, fmt, W.shape[0]), indent=2), encoding="utf-8"
        )
        if dest.exists():
            dest.rmdir()  # empty, checked above
        os.replace(work, dest)
    except OSError as exc:
        raise InvalidSettings(f"Cannot write {dest}: {exc.strerror or exc}.") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def _write_transform(folder: Path, W: NDArray[np.float32]) -> None:
    import torch
    from safetensors.numpy import save_file

    save_file({"weight": W}, str(folder / TRANSFORM_FILE), metadata={"apply": "normalise(W @ q)"})
    adapter = folder / LLAMAINDEX_DIR
    adapter.mkdir()
    d_out, d_in = W.shape
    (adapter / "config.json").write_text(
        json.dumps({"in_features": int(d_in), "out_features": int(d_out), "bias": False})
    )
    # LlamaIndex's LinearLayer: an nn.Linear named `linear` (state dict key linear.weight).
    torch.save({"linear.weight": torch.from_numpy(W.copy())}, adapter / "pytorch_model.bin")


def _write_sentence_transformers(folder: Path, W: NDArray[np.float32]) -> None:
    """The Router folder. The encoder is loaded twice (one copy per route) because each route
    saves its own modules; the folder is ~180 MB for MiniLM."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Dense, Module, Normalize, Router

    path = local_model_path()

    def encoder() -> list[Module]:  # Transformer, Pooling, Normalize: one copy per route
        return list(SentenceTransformer(path, device="cpu").children())  # type: ignore[arg-type]

    query_side, document_side = encoder(), encoder()
    d_out, d_in = W.shape
    dense = Dense(
        d_in,
        d_out,
        bias=False,
        activation_function=None,
        init_weight=torch.from_numpy(W.copy()),
    )
    router = Router.for_query_document(
        query_modules=[*query_side, dense, Normalize()],
        document_modules=document_side,
        default_route="document",
    )
    model = SentenceTransformer(modules=[router], device="cpu")
    model.save(str(folder))  # writes its own README.md: the model card below replaces it


def _facts_json(facts: ModelFacts, fmt: str, dim: int) -> dict[str, Any]:
    m = facts.metrics
    return {
        "format": fmt,
        "run_id": facts.run_id,
        "vector_store_path": facts.store,
        "embedding": facts.embedding,
        "dimension": dim,
        "heldout": {"before": m.get("before"), "after": m.get("after")},
        "heldout_pairs": m.get("heldout_pairs"),
        "evaluated_on": m.get("evaluated_on"),
        "guard": facts.guard,
        "in_use_by_dmdesk_search": facts.in_use,
    }


def _figures(metrics: dict[str, Any]) -> str:
    before, after = metrics.get("before") or {}, metrics.get("after") or {}
    rows = [
        f"| {k} | {before[k]:.3f} | {after[k]:.3f} |"
        for k in ("recall@1", "recall@3", "recall@5", "recall@10", "mrr")
        if isinstance(before.get(k), int | float) and isinstance(after.get(k), int | float)
    ]
    if not rows:
        return "No held-out figures were recorded for this run.\n"
    where = metrics.get("evaluated_on", "held-out pairs")
    head = f"On {metrics.get('heldout_pairs', '?')} {where} (never trained on):\n\n"
    return head + "| metric | without | with |\n|---|---|---|\n" + "\n".join(rows) + "\n"


def model_card(facts: ModelFacts, fmt: str, dim: int) -> str:
    verdict = facts.guard or "no verdict recorded"
    use = (
        "dmdesk's own search uses this model."
        if facts.in_use
        else "dmdesk's own search does not use this model."
    )
    parts = [
        f"# Deep Memory model of dmdesk run #{facts.run_id}\n",
        "A query-side transform learned by dmdesk's local Deep Memory engine from the approved "
        "(question, chunk) pairs of this run. Chunk embeddings are unchanged: **the store is "
        "never re-embedded**; only queries are transformed, `q' = normalise(W q)`.\n",
        f"- store: `{facts.store}`\n- embedding of the store: `{facts.embedding}` ({dim}-d)\n"
        f"- format: {fmt}\n",
        "## Held-out figures\n",
        _figures(facts.metrics),
        "## The activation guard\n",
        f"{verdict}\n\n{use} A model the guard did not activate showed no measurable gain: "
        "use it in your application only if your own evaluation says it helps.\n",
        "## Use\n",
    ]
    if fmt == SENTENCE_TRANSFORMERS:
        parts.append(
            "```python\nfrom sentence_transformers import SentenceTransformer\n\n"
            'model = SentenceTransformer("path/to/this/folder")\n'
            'query = model.encode_query(["How do I ...?"])      # with Deep Memory\n'
            "documents = model.encode_document(texts)          # = the store's embeddings\n```\n\n"
            "A `Router` model: `encode_query` runs the store's encoder and the learned "
            "transform; `encode_document` (and a plain `encode`) the encoder alone.\n\n"
        )
    else:
        parts.append(
            f"This store is embedded by `{facts.embedding}`"
            + (
                ", an API model: there is no local encoder to wrap, so the export is the "
                "transform alone. "
                if facts.embedding != "local"
                else ". "
            )
            + "Embed the query as the store was embedded, then:\n\n"
        )
    parts.append(
        "```python\nimport numpy as np\nfrom safetensors.numpy import load_file\n\n"
        f'W = load_file("path/to/this/folder/{TRANSFORM_FILE}")["weight"]\n'
        "q = W @ q\nq = q / np.linalg.norm(q)   # search the store with q\n```\n\n"
        f'LlamaIndex: `AdapterEmbeddingModel(base_embed_model, adapter_path="…/{LLAMAINDEX_DIR}")`'
        " (llama-index-embeddings-adapter) applies the same transform to query embeddings.\n"
    )
    return "\n".join(parts)
