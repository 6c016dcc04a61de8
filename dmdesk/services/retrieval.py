"""Search, corpus import and BEIR-style evaluation (`dmdesk search | import | evaluate`).

Local stores are searched with numpy over the store's embedding matrix (deeplake 3.9's own local
search needs `exec_option="python"` and is slower); DeepLake Cloud stores through
`VectorStore.search(..., deep_memory=...)`. "With Deep Memory" on a local store means the active
model of the store (dmdesk.services.activation): a local adapter, or DeepLake Cloud's Deep
Memory; only a model that passed the activation guard, or that the admin chose.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dmdesk import secrets
from dmdesk.deepmemory import adapters, evalset, memory
from dmdesk.deepmemory.cloud import explain, open_cloud_store
from dmdesk.deepmemory.metrics import retrieval_metrics
from dmdesk.domain.errors import InvalidSettings, RuleViolation, VectorStoreError
from dmdesk.embeddings import (
    DeepLakeEmbedding,
    EmbeddingFunction,
    close_embedding,
    make_embedding,
)
from dmdesk.services.context import ServiceContext
from dmdesk.vectorstore._deeplake import import_deeplake
from dmdesk.vectorstore.service import VectorStoreService, create_store_tensors

IMPORT_BATCH = 256


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    text: str


def _embedding(ctx: ServiceContext) -> EmbeddingFunction:
    return make_embedding(ctx.config.embedding, base_url=ctx.config.llm_base_url)


def _no_adapter(ctx: ServiceContext) -> RuleViolation:
    return RuleViolation(
        f"No Deep Memory is active for {ctx.config.vector_store_path}: a trained model is used "
        "only once it measurably improved retrieval, or when you choose it (Use this model, "
        "or `dmdesk activate RUN_ID`)."
    )


def _validate(query: str, k: int) -> None:
    if not query.strip():
        raise InvalidSettings("The search query is empty.")
    if k < 1:
        raise InvalidSettings("-k must be at least 1.")


def search(ctx: ServiceContext, query: str, k: int = 5, deep_memory: bool = False) -> list[Hit]:
    """The top k chunks for the query, with the active Deep Memory when asked (and only a model
    that passed the activation guard or that the admin chose)."""
    _validate(query, k)
    without, with_dm = compare(ctx, query, k, plain=not deep_memory, deep_memory=deep_memory)
    return with_dm if deep_memory and with_dm is not None else without


def compare(
    ctx: ServiceContext,
    query: str,
    k: int = 5,
    *,
    plain: bool = True,
    deep_memory: bool = True,
) -> tuple[list[Hit], list[Hit] | None]:
    """Results without and with the active Deep Memory, side by side (the window's search box).
    `with` is None when no model is active (and `deep_memory` was not insisted on)."""
    _validate(query, k)
    store = ctx.vector_store_factory(ctx.config.vector_store_path)
    active = adapters.active_run(ctx.config.data_dir, ctx.config.vector_store_path)
    adapter = None
    if active is not None and not store.is_cloud:
        adapter = adapters.active_adapter(ctx.config.data_dir, ctx.config.vector_store_path)
    use_dm = deep_memory and active is not None and (store.is_cloud or adapter is not None)
    if deep_memory and not plain and not use_dm:
        raise _no_adapter(ctx)
    embed = _embedding(ctx)
    try:
        return _ranked(ctx, store, embed, query, k, plain, use_dm, adapter)
    finally:
        close_embedding(embed)


def _ranked(
    ctx: ServiceContext,
    store: VectorStoreService,
    embed: EmbeddingFunction,
    query: str,
    k: int,
    plain: bool,
    use_dm: bool,
    adapter: adapters.Adapter | None,
) -> tuple[list[Hit], list[Hit] | None]:
    if store.is_cloud:
        without = _search_cloud(ctx, store, embed, query, k, False) if plain else []
        with_dm = _search_cloud(ctx, store, embed, query, k, True) if use_dm else None
        return without, with_dm
    q = embed([query])
    ids, corpus = store.corpus_embeddings(embed)
    check_dimensions(ctx, q.shape[1], corpus.shape[1], adapter if use_dm else None)

    def top_k(vector: NDArray[np.float32]) -> list[Hit]:
        scores = corpus @ vector
        top = np.argsort(-scores)[:k].tolist()
        text_of = dict(zip(sorted(top), store.read_texts(sorted(top)), strict=True))
        return [Hit(ids[i], float(scores[i]), text_of[i]) for i in top]

    without = top_k(q[0]) if plain else []
    with_dm = top_k(adapter.apply(q)[0]) if adapter is not None and use_dm else None
    return without, with_dm


def check_dimensions(
    ctx: ServiceContext, query_dim: int, store_dim: int, adapter: adapters.Adapter | None = None
) -> None:
    """One clear message (exit 2) when the configured embedding model does not fit the store, or
    the Deep Memory model in use — instead of a numpy error deep inside a search."""
    configured = ctx.config.embedding
    if store_dim and query_dim != store_dim:
        raise InvalidSettings(
            f"The store's embeddings are {store_dim}-d but DMDESK_EMBEDDING={configured} gives "
            f"{query_dim}-d: set DMDESK_EMBEDDING to the model the store was built with."
        )
    if adapter is not None and adapter.matrix.shape[1] != query_dim:
        raise InvalidSettings(
            f"Run #{adapter.run_id}'s Deep Memory model was trained on "
            f"{adapter.matrix.shape[1]}-d embeddings ({adapter.embedding}) but DMDESK_EMBEDDING="
            f"{configured} gives {query_dim}-d: set DMDESK_EMBEDDING={adapter.embedding}, or "
            "train a new run with this model."
        )


def _search_cloud(
    ctx: ServiceContext,
    store: VectorStoreService,
    embed: EmbeddingFunction,
    query: str,
    k: int,
    deep_memory: bool,
) -> list[Hit]:

    token = secrets.get_secret(secrets.ACTIVELOOP_TOKEN)
    if not token:
        raise VectorStoreError("A DeepLake Cloud store needs ACTIVELOOP_TOKEN.")
    try:
        vs = open_cloud_store(store.path or "", token, embed)
        result = vs.search(
            embedding_data=query,
            embedding_function=DeepLakeEmbedding(embed),
            k=k,
            deep_memory=deep_memory,
            return_tensors=["id", "text"],
        )
    except Exception as exc:
        raise VectorStoreError(
            f"Search on {store.path} failed: {explain(exc, store.path or '')}"
        ) from None
    return [
        Hit(str(i), float(s), str(t))
        for i, s, t in zip(result["id"], result["score"], result["text"], strict=False)
    ]


# -- import ------------------------------------------------------------------------------------


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    raise InvalidSettings(f"{path}:{n} is not a JSON line.") from None
                if not isinstance(obj, dict):
                    raise InvalidSettings(f"{path}:{n} is not a JSON object.")
                yield n, obj
    except FileNotFoundError:
        raise InvalidSettings(f"{path} does not exist.") from None
    except UnicodeDecodeError:
        raise InvalidSettings(f"{path} is not UTF-8 text.") from None


def _corpus_file(corpus_path: Path) -> Path:
    """A corpus file, or a BEIR folder holding `corpus.jsonl`."""
    path = Path(corpus_path)
    if path.is_dir():
        inner = path / "corpus.jsonl"
        if inner.is_file():
            return inner
        raise InvalidSettings(
            f"{path} is a folder without corpus.jsonl: give a corpus .jsonl file, or a BEIR "
            "folder that holds corpus.jsonl."
        )
    if not path.exists():
        raise InvalidSettings(f"{path} does not exist.")
    return path


def _stored_dimension(ds: Any) -> int:
    """The embedding dimension of a store's rows (0 when it has none yet)."""
    if len(ds["embedding"]) == 0:
        return 0
    return int(np.asarray(ds["embedding"][0].numpy()).shape[-1])


def import_corpus(
    ctx: ServiceContext,
    corpus_path: Path,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, int]:
    """Append BEIR corpus lines {"_id", "title", "text"} to the configured local store (created
    if missing), embedded in batches. Ids already in the store are skipped.

    Nothing is written until every document is embedded and the embedding's dimension matches
    the store's (a mismatch is refused, exit 2, the store untouched); the rows are then added in
    one `extend`, which deeplake rolls back as a whole if it fails."""
    path = ctx.config.vector_store_path
    if not path:
        raise InvalidSettings("Set DMDESK_VECTOR_STORE_PATH to the local store to import into.")
    if VectorStoreService._is_cloud(path):
        raise InvalidSettings("dmdesk import writes to local stores only, not hub:// stores.")
    corpus_file = _corpus_file(corpus_path)
    docs: list[tuple[str, str, dict[str, Any]]] = []
    for n, obj in read_jsonl(corpus_file):
        if "_id" not in obj or not isinstance(obj.get("text"), str):
            raise InvalidSettings(f'{corpus_file}:{n} needs "_id" and "text".')
        title = obj.get("title") or ""
        text = f"{title}\n{obj['text']}" if title else obj["text"]
        docs.append((str(obj["_id"]), text, {"title": title, "source": "beir"}))
    deeplake = import_deeplake()
    store_dir = Path(path)
    ds = None
    existing: set[str] = set()
    store_dim = 0
    if store_dir.exists():
        try:
            ds = deeplake.load(str(store_dir), verbose=False)
        except Exception as exc:
            raise VectorStoreError(f"Cannot open {store_dir} for writing: {exc}") from None
        if ds.read_only:
            raise VectorStoreError(f"{store_dir} is opened read-only (another process holds it).")
        existing = set(VectorStoreService(str(store_dir)).read_ids(len(ds["text"])))
        store_dim = _stored_dimension(ds)
    todo = [d for d in docs if d[0] not in existing]
    embed = _embedding(ctx)
    try:
        vectors = []
        for start in range(0, len(todo), IMPORT_BATCH):
            batch = np.asarray(embed([t for _, t, _ in todo[start : start + IMPORT_BATCH]]))
            if start == 0:
                check_dimensions(ctx, batch.shape[1], store_dim)
            vectors.append(batch)
            if progress:
                progress("embedding", start + len(batch), len(todo))
    finally:
        close_embedding(embed)
    if not todo:
        return {"imported": 0, "skipped": len(docs)}
    if ds is None:
        ds = deeplake.empty(str(store_dir), verbose=False)
        with ds:
            create_store_tensors(ds)
    if progress:
        progress("writing", len(todo), len(todo))
    with ds:
        ds.extend(
            {
                "id": [i for i, _, _ in todo],
                "text": [t for _, t, _ in todo],
                "metadata": [m for _, _, m in todo],
                "embedding": np.concatenate(vectors).astype(np.float32),
            }
        )
    return {"imported": len(todo), "skipped": len(docs) - len(todo)}


# -- evaluation --------------------------------------------------------------------------------


def read_qrels(path: Path) -> dict[str, dict[str, float]]:
    qrels: dict[str, dict[str, float]] = {}
    try:
        with Path(path).open(encoding="utf-8", newline="") as f:
            for n, row in enumerate(csv.reader(f, delimiter="\t"), 1):
                if not row or (n == 1 and row[0].lower() in ("query-id", "query_id", "qid")):
                    continue
                if len(row) < 2:
                    raise InvalidSettings(f"{path}:{n} needs query-id, corpus-id[, score].")
                score = float(row[2]) if len(row) > 2 and row[2].strip() else 1.0
                if score > 0:
                    qrels.setdefault(row[0], {})[row[1]] = score
    except FileNotFoundError:
        raise InvalidSettings(f"{path} does not exist.") from None
    except ValueError:
        raise InvalidSettings(f"{path}: a score is not a number.") from None
    return qrels


def read_labelled(queries_path: Path, qrels_path: Path) -> tuple[list[str], list[list[str]]]:
    """Questions and their relevant chunk ids from BEIR queries (JSON lines) and qrels."""
    qrels = read_qrels(qrels_path)
    queries = {
        str(o["_id"]): str(o.get("text", ""))
        for _, o in read_jsonl(Path(queries_path))
        if "_id" in o
    }
    kept = [(text, list(qrels[qid])) for qid, text in queries.items() if qid in qrels]
    return [t for t, _ in kept], [r for _, r in kept]


def read_question_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """Questions and their relevant chunk ids from a CSV of `question,chunk_id` rows (a header
    row is optional; a question on several rows has several relevant chunks)."""
    relevant: dict[str, list[str]] = {}
    try:
        with Path(path).open(encoding="utf-8-sig", newline="") as f:
            for n, row in enumerate(csv.reader(f), 1):
                if not row or not "".join(row).strip():
                    continue
                if n == 1 and [c.strip().lower() for c in row[:2]] == ["question", "chunk_id"]:
                    continue
                if len(row) < 2 or not row[0].strip() or not row[1].strip():
                    raise InvalidSettings(f"{path}:{n} needs a question and a chunk id.")
                ids = relevant.setdefault(row[0].strip(), [])
                if row[1].strip() not in ids:
                    ids.append(row[1].strip())
    except FileNotFoundError:
        raise InvalidSettings(f"{path} does not exist.") from None
    except UnicodeDecodeError:
        raise InvalidSettings(f"{path} is not UTF-8 text.") from None
    except csv.Error as exc:
        raise InvalidSettings(f"{path} is not a readable CSV file ({exc}).") from None
    return list(relevant), list(relevant.values())


def saved_evaluation_set(ctx: ServiceContext) -> evalset.EvaluationSet | None:
    return evalset.load(ctx.config.data_dir, ctx.config.vector_store_path)


def evaluate(
    ctx: ServiceContext,
    questions: Sequence[str],
    relevant_ids: Sequence[Sequence[str]],
    ks: Sequence[int],
    *,
    save_as: str | None = None,
) -> dict[str, Any]:
    """recall@k and MRR of the store for labelled questions, without and (when an adapter is
    active for this store) with Deep Memory. `save_as` (the source's name) keeps the questions
    that have an answer chunk in the store as the store's evaluation set, which every later
    training run is judged on (dmdesk.deepmemory.evalset)."""
    if not ks or any(k < 1 for k in ks):
        raise InvalidSettings("-k takes positive whole numbers, e.g. 1,3,5,10.")
    embed = _embedding(ctx)
    store = ctx.vector_store_factory(ctx.config.vector_store_path)
    if store.is_cloud:
        raise InvalidSettings(
            "dmdesk evaluate works on local stores; use DeepLake's evaluate for hub:// stores."
        )
    dim = store.embedding_dim()
    if dim is not None:
        memory.check_fits("dmdesk evaluate", store.row_count(), dim, len(questions))
    ids, corpus = store.corpus_embeddings(embed)
    kept = evalset.answerable(questions, relevant_ids, ids)
    if not kept.questions:
        raise InvalidSettings("No question has a relevant chunk in the store.")
    q = embed(kept.questions)
    adapter = adapters.active_adapter(ctx.config.data_dir, ctx.config.vector_store_path)
    check_dimensions(ctx, q.shape[1], corpus.shape[1], adapter)
    result: dict[str, Any] = {"without": retrieval_metrics(q, corpus, kept.rows, ks)}
    if adapter is not None:
        result["with"] = retrieval_metrics(adapter.apply(q), corpus, kept.rows, ks)
    result["skipped_queries"] = len(questions) - len(kept.questions)
    if save_as is not None:
        if len(kept.questions) > evalset.MAX_QUESTIONS:
            raise InvalidSettings(
                f"An evaluation set holds at most {evalset.MAX_QUESTIONS:,} questions; this one "
                f"has {len(kept.questions):,}: keep a sample."
            )
        saved = evalset.save(
            ctx.config.data_dir,
            ctx.config.vector_store_path or "",
            kept.questions,
            kept.chunk_ids,
            save_as,
        )
        result["saved"] = saved.describe()
    return result
