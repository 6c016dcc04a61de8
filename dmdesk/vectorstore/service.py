"""VectorStoreService: open the configured DeepLake store and stream its chunks.

deeplake 3.9's `VectorStore(path=...)` calls Activeloop's user-profile endpoint even for a local
path and, offline, retries without end (DESIGN.md "Known facts"). Local stores therefore go through
the dataset API (`deeplake.load(path, read_only=True)`); `VectorStore` is used only for `hub://`.

Chunks are read in batches (one slice read per tensor per batch), never row by row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmdesk import secrets
from dmdesk.domain.errors import VectorStoreError
from dmdesk.vectorstore._deeplake import import_deeplake, prepare_cloud

CLOUD_PREFIX = "hub://"
TEXT_TENSOR = "text"
ID_TENSOR = "id"
EMBEDDING_TENSOR = "embedding"


@dataclass(frozen=True, slots=True)
class Chunk:
    row: int
    id: str
    text: str


class VectorStoreService:
    def __init__(self, path: str | None, token_provider: Callable[[], str | None] | None = None):
        self.path = path
        self._token_provider = token_provider or (lambda: None)
        self._ds: Any = None

    @staticmethod
    def _is_cloud(path: str | None) -> bool:
        """True for DeepLake Cloud (`hub://org/name`) stores (FR-6.1)."""
        return bool(path) and str(path).strip().lower().startswith(CLOUD_PREFIX)

    @property
    def is_cloud(self) -> bool:
        return self._is_cloud(self.path)

    # -- opening -------------------------------------------------------------------------------

    def open(self) -> Any:
        if self._ds is not None:
            return self._ds
        if not self.path:
            raise VectorStoreError(
                "No vector store is configured. Set DMDESK_VECTOR_STORE_PATH (a local folder or "
                "hub://org/dataset) or choose it in the Settings card."
            )
        ds = self._open_cloud() if self.is_cloud else self._open_local()
        if TEXT_TENSOR not in ds.tensors:
            raise VectorStoreError(
                f"The dataset at {self.path} has no '{TEXT_TENSOR}' tensor (it has: "
                f"{', '.join(sorted(ds.tensors)) or 'none'}); dmdesk needs the chunk texts."
            )
        self._ds = ds
        return ds

    def _open_local(self) -> Any:
        """deeplake 3.9 keeps up to 2,000 MB of a local dataset's chunks in memory by default:
        reading a 1M-chunk store's embeddings (1.5 GB) then held 1.2 GB more than the matrix
        (bench/local_scale.py: peak 3.5 GB). dmdesk reads each chunk once, in order, so a small
        cache costs nothing measurable."""
        path = Path(self.path or "").expanduser()
        if not path.exists():
            raise VectorStoreError(f"The vector store path {path} does not exist.")
        if not path.is_dir() or not (path / "dataset_meta.json").is_file():
            raise VectorStoreError(
                f"{path} is not a DeepLake dataset (no dataset_meta.json). Point "
                "DMDESK_VECTOR_STORE_PATH at the dataset folder itself."
            )
        deeplake = import_deeplake()
        try:
            return deeplake.load(
                str(path), read_only=True, verbose=False, memory_cache_size=MEMORY_CACHE_MB
            )
        except Exception as exc:
            raise VectorStoreError(
                f"Cannot open the DeepLake dataset at {path}: {type(exc).__name__}: {exc}"
            ) from None

    def _open_cloud(self) -> Any:

        prepare_cloud()
        from deeplake.core.vectorstore import VectorStore

        token = self._token_provider()
        if not token:
            raise VectorStoreError(
                "A DeepLake Cloud store needs an Activeloop token: set ACTIVELOOP_TOKEN or save it "
                "in the Settings card (it goes to the OS keyring)."
            )
        try:
            store = VectorStore(path=self.path, token=token, read_only=True, verbose=False)
        except Exception as exc:
            raise VectorStoreError(
                f"Cannot open the DeepLake Cloud store {self.path}: {type(exc).__name__}"
            ) from None
        return store.dataset

    # -- reading -------------------------------------------------------------------------------

    def row_count(self) -> int:
        # The text tensor, not len(ds): len(ds) is the shortest tensor (an empty embedding
        # tensor would make it 0) and logs a warning.
        return len(self.open()[TEXT_TENSOR])

    def read_ids(self, stop: int, batch_size: int = 50_000) -> list[str]:
        """Chunk ids of rows [0, stop): the `id` tensor, else the row number."""
        ds = self.open()
        if ID_TENSOR not in ds.tensors:
            return [str(i) for i in range(stop)]
        out: list[str] = []
        for start in range(0, stop, batch_size):
            out.extend(_as_str_list(ds[ID_TENSOR][start : min(stop, start + batch_size)]))
        return out

    def read_texts(self, rows: Sequence[int]) -> list[str]:
        if not rows:
            return []
        ds = self.open()
        rows = list(rows)
        lo, hi = rows[0], rows[-1] + 1
        if hi - lo == len(rows):  # contiguous: one slice read
            return _as_str_list(ds[TEXT_TENSOR][lo:hi])
        return _as_str_list(ds[TEXT_TENSOR][rows])

    def iter_chunks(
        self,
        stop: int,
        skip_ids: set[str] | frozenset[str] = frozenset(),
        batch_size: int = 256,
        id_block: int = 8192,
        start_row: int = 0,
        once_per_id: bool = False,
    ) -> Iterator[tuple[list[Chunk], int]]:
        """Yield `(batch, next_row)` for the chunks of rows [start_row, stop) whose id is not in
        `skip_ids`: `next_row` is the lowest row neither yielded yet nor skipped as done (every
        row below it has been handed out or needs nothing; `stop` once all are). With
        `once_per_id` (a store whose `id` tensor repeats ids), a row whose id an earlier row
        already yielded is skipped too: a chunk is its id.

        Ids are read a block at a time (deeplake 3.9 decodes text at ~11 µs a sample, so 100k
        ids cost ~1.1 s): the first chunks to do are yielded as soon as their block is read, and
        only ids and texts of one block are held at once.
        """
        ds = self.open()
        has_ids = ID_TENSOR in ds.tensors
        pending: list[tuple[int, str]] = []
        yielded: set[str] = set()
        for start in range(start_row, stop, id_block):
            end = min(stop, start + id_block)
            ids = (
                _as_str_list(ds[ID_TENSOR][start:end])
                if has_ids
                else [str(i) for i in range(start, end)]
            )
            if once_per_id:
                fresh = []
                for i, cid in enumerate(ids):
                    if cid not in skip_ids and cid not in yielded:
                        yielded.add(cid)
                        fresh.append((start + i, cid))
                pending.extend(fresh)
            else:
                pending.extend((start + i, cid) for i, cid in enumerate(ids) if cid not in skip_ids)
            while len(pending) >= batch_size or (pending and end == stop):
                batch, pending = pending[:batch_size], pending[batch_size:]
                texts = self.read_texts([r for r, _ in batch])
                chunks = [Chunk(r, cid, t) for (r, cid), t in zip(batch, texts, strict=True)]
                yield chunks, pending[0][0] if pending else end

    def read_embeddings(self, stop: int | None = None, batch_size: int = 20_000) -> Any:
        """The `embedding` tensor of rows [0, stop) as a float32 matrix, or None when the store
        has none (or fewer embeddings than texts). Read batch by batch into one matrix allocated
        up front, so the peak is the matrix plus one batch, not twice the matrix."""
        import numpy as np

        ds = self.open()
        stop = self.row_count() if stop is None else stop
        if EMBEDDING_TENSOR not in ds.tensors or len(ds[EMBEDDING_TENSOR]) < stop:
            return None
        if stop == 0:
            return np.zeros((0, 0), np.float32)
        out: Any = None
        for i in range(0, stop, batch_size):
            part = np.asarray(ds[EMBEDDING_TENSOR][i : min(stop, i + batch_size)].numpy())
            if out is None:
                out = np.empty((stop, part.shape[1]), np.float32)
            out[i : i + len(part)] = part
        return out

    def embedding_dim(self) -> int | None:
        """The dimension of the store's embeddings (from its first row), None without any."""
        ds = self.open()
        if EMBEDDING_TENSOR not in ds.tensors or len(ds[EMBEDDING_TENSOR]) == 0:
            return None
        return int(ds[EMBEDDING_TENSOR][0].numpy().shape[-1])

    def corpus_embeddings(
        self, embed: Callable[[list[str]], Any], on_embed: Callable[[int], None] | None = None
    ) -> tuple[list[str], Any]:
        """Ids and L2-normalised embeddings of every chunk: the store's own `embedding` tensor,
        or, when the store has none, `embed` over the chunk texts (`on_embed(n)` says so first).
        Normalised in place: one float32 copy of the store in memory, never two."""
        import numpy as np

        n = self.row_count()
        ids = self.read_ids(n)
        matrix = self.read_embeddings(n)
        if matrix is None:
            if on_embed is not None:
                on_embed(n)
            matrix = np.array(embed(self.read_texts(list(range(n)))), np.float32)
        for start in range(0, len(matrix), 65_536):  # no matrix-sized temporary
            block = matrix[start : start + 65_536]
            norms = np.sqrt(np.einsum("ij,ij->i", block, block))[:, None]
            norms[norms == 0] = 1.0
            block /= norms
        return ids, matrix

    def close(self) -> None:
        self._ds = None


MEMORY_CACHE_MB = 64  # deeplake's in-memory chunk cache for a local store (default: 2,000)


def open_store(path: str | None) -> VectorStoreService:
    """The store at `path`, with the Activeloop token from the environment or keyring."""

    return VectorStoreService(path, lambda: secrets.get_secret(secrets.ACTIVELOOP_TOKEN))


def _as_str_list(tensor_view: Any) -> list[str]:
    values = tensor_view.data()["value"]
    if isinstance(values, str):
        return [values]
    return [v if isinstance(v, str) else str(v) for v in values]


def create_store_tensors(ds: Any) -> None:
    """The tensors deeplake's VectorStore uses (text, id, metadata, embedding), on an empty
    dataset: one schema for every store dmdesk writes."""
    ds.create_tensor("text", htype="text", create_shape_tensor=False, create_id_tensor=False)
    ds.create_tensor("id", htype="text", create_shape_tensor=False, create_id_tensor=False)
    ds.create_tensor("metadata", htype="json", create_shape_tensor=False)
    ds.create_tensor("embedding", htype="embedding", dtype="float32")


def create_local_store(
    path: str | Path,
    ids: Sequence[str],
    texts: Sequence[str],
    embeddings: Any = None,
    metadata: Sequence[dict[str, Any]] | None = None,
    overwrite: bool = False,
) -> None:
    """Build a local store with the tensors deeplake's VectorStore uses (text, id, embedding,
    metadata), through the dataset API (no network)."""
    deeplake = import_deeplake()
    ds = deeplake.empty(str(path), overwrite=overwrite, verbose=False)
    with ds:
        create_store_tensors(ds)
        data: dict[str, Any] = {"text": list(texts), "id": list(ids)}
        data["metadata"] = list(metadata) if metadata is not None else [{} for _ in ids]
        if embeddings is not None:
            data["embedding"] = embeddings
        ds.extend(data, skip_ok=True)  # without embeddings the tensor stays empty


def count_chunks(store: Any, rows: int) -> int:
    """The chunks of rows [0, rows): distinct ids. A chunk's identity is its id — pairs and
    Deep Memory's relevance name chunks by id — so a row that repeats an earlier row's id is
    the same chunk and gets no pairs of its own (one read of the ids, ~11 µs a row)."""
    return len(set(store.read_ids(rows)))
