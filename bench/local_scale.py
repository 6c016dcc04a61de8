"""Local Deep Memory at a real knowledge base's size: the quality filters and the training over
1,000,000 chunks × 384-d with 50,000 approved pairs, each phase in a child process of its own
(its time and peak RSS, ru_maxrss). Targets: ≤ 15 minutes and ≤ 4 GB peak RSS each.

    python bench/local_scale.py [--chunks 1000000] [--pairs 50000] [--dim 384]

The store is a real DeepLake dataset on disk (built once, cached in the temp dir: ~1.6 GB for
1M chunks). Its embeddings are synthetic but shaped like a knowledge base's: 2,000 topics, each
chunk a topic centre plus its own detail; a question is its chunk plus noise plus a direction
every question shares (the wording questions have and chunks do not) — something a linear
query adapter can learn. The questions' "embedding" decodes the chunk row from the question's
text and rebuilds that vector, so the phases measure dmdesk's work, not an encoder's (MiniLM
embeds ~250 questions/s here: 50,000 questions would add ~3.5 minutes to each phase).

Each phase prints its time as a ratio of the 15-minute limit, its peak RSS as a ratio of 4 GB,
and the ideal time — its matrix products at this machine's measured GEMM rate — as a ratio of
the time achieved.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import CACHE

BATCH = 50_000
TOPICS = 2_000
LIMIT_S = 15 * 60
LIMIT_RSS = 4 * 2**30


def chunk_block(b: int, dim: int) -> np.ndarray:
    """Rows [b·BATCH, (b+1)·BATCH) of the synthetic store (deterministic, normalised)."""
    centres = np.random.default_rng(12345).normal(size=(TOPICS, dim)).astype(np.float32)
    rng = np.random.default_rng(b)
    topic = rng.integers(0, TOPICS, size=BATCH)
    v = centres[topic] + 0.9 * rng.normal(size=(BATCH, dim)).astype(np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def build_store(n: int, dim: int) -> Path:
    path = CACHE / f"scale-{n}-{dim}"
    if (path / "dataset_meta.json").is_file():
        return path
    from dmdesk.vectorstore._deeplake import import_deeplake
    from dmdesk.vectorstore.service import create_store_tensors

    deeplake = import_deeplake()
    tmp = path.with_name(path.name + ".tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ds = deeplake.empty(str(tmp), overwrite=True, verbose=False)
    with ds:
        create_store_tensors(ds)
        for b in range(0, (n + BATCH - 1) // BATCH):
            rows = range(b * BATCH, min(n, (b + 1) * BATCH))
            ds.extend(
                {
                    "text": [f"Chunk {i} of the manual." for i in rows],
                    "id": [f"c{i:07d}" for i in rows],
                    "metadata": [{} for _ in rows],
                    "embedding": chunk_block(b, dim)[: len(rows)],
                },
                skip_ok=True,
            )
            print(f"  store: {rows.stop:,}/{n:,} rows ({time.perf_counter() - t0:.0f} s)")
    tmp.rename(path)
    return path


class BenchQuestions:
    """'q<row>' → its chunk's vector + noise + the shared question direction (normalised)."""

    name = "bench-questions"

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.shift = np.random.default_rng(99).normal(size=dim).astype(np.float32)
        self.shift *= 0.8 / np.linalg.norm(self.shift)

    def __call__(self, texts: list[str]) -> np.ndarray:
        rows = np.array([int(t[1:]) for t in texts])
        out = np.empty((len(rows), self.dim), np.float32)
        for b in np.unique(rows // BATCH):
            mine = np.flatnonzero(rows // BATCH == b)
            out[mine] = chunk_block(int(b), self.dim)[rows[mine] - b * BATCH]
        rng = np.random.default_rng(7)
        out += 3.0 * rng.normal(size=out.shape).astype(np.float32) / np.sqrt(self.dim)
        out += self.shift
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def pair_rows(n: int, pairs: int) -> np.ndarray:
    return np.sort(np.random.default_rng(5).choice(n, size=pairs, replace=False))


def gemm_rate() -> float:
    """This machine's float32 matrix product rate (flops/s), on a tile like the scans'."""
    a = np.random.default_rng(0).normal(size=(1024, 384)).astype(np.float32)
    b = np.random.default_rng(1).normal(size=(16384, 384)).astype(np.float32)
    a @ b.T
    t0 = time.perf_counter()
    for _ in range(5):
        a @ b.T
    return 5 * 2 * 1024 * 16384 * 384 / (time.perf_counter() - t0)


def child_filters(store: str, pairs: int, dim: int) -> dict:
    from dmdesk.deepmemory import memory
    from dmdesk.services.quality import Thresholds, assess
    from dmdesk.vectorstore.service import open_store

    t0 = time.perf_counter()
    s = open_store(store)
    n = s.row_count()
    need = memory.check_fits("the filters", n, dim, pairs)
    _ids, corpus = s.corpus_embeddings(BenchQuestions(dim))
    read_s = time.perf_counter() - t0
    rows = pair_rows(n, pairs)
    questions = [f"q{r}" for r in rows]
    q = BenchQuestions(dim)(questions)
    t1 = time.perf_counter()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 60:
            last[0] = time.perf_counter()
            print(f"  filters: {done:,}/{total:,} ({last[0] - t1:.0f} s)", flush=True)

    flags = assess(
        [f"What does chunk {r} say?" for r in rows],
        rows.tolist(),
        q,
        corpus,
        Thresholds(),
        progress=progress,
    )
    return {
        "read_s": read_s,
        "scan_s": time.perf_counter() - t1,
        "flagged": sum(f is not None for f in flags),
        "estimate": need,
        "flops": 2.0 * pairs * n * dim,
    }


def child_train(store: str, pairs: int, dim: int) -> dict:
    import tempfile
    import threading

    from dmdesk.deepmemory.base import TrainingRequest
    from dmdesk.deepmemory.local import LocalEngineBackend
    from dmdesk.vectorstore.service import open_store

    n = open_store(store).row_count()
    rows = pair_rows(n, pairs)
    embed = BenchQuestions(dim)
    request = TrainingRequest(
        run_id=1,
        queries=[f"q{r}" for r in rows],
        relevance=[[(f"c{r:07d}", 1)] for r in rows],
        vector_store_path=store,
    )
    t0 = time.perf_counter()
    last = [0.0, ""]

    def progress(fraction: float, what: str) -> None:
        head = what.split(":")[0]
        if head != last[1] or time.perf_counter() - last[0] > 60:
            last[0], last[1] = time.perf_counter(), head
            print(f"  train {time.perf_counter() - t0:6.0f} s  {what}", flush=True)

    with tempfile.TemporaryDirectory() as data_dir:
        metrics = LocalEngineBackend(Path(data_dir), lambda: embed, open_store).train(
            request, on_job_id=lambda _j: None, progress=progress, cancel=threading.Event()
        )
    metrics.pop("heldout_ranks")
    return metrics


def run_child(phase: str, store: Path, pairs: int, dim: int) -> tuple[dict, float, int]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            phase,
            "--store",
            str(store),
            "--pairs",
            str(pairs),
            "--dim",
            str(dim),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{phase} failed (exit {proc.returncode})")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result, seconds, result.pop("maxrss_kb") * 1024


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--chunks", type=int, default=1_000_000)
    p.add_argument("--pairs", type=int, default=50_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--phase", choices=["all", "filters", "train"], default="all")
    p.add_argument("--child")
    p.add_argument("--store")
    args = p.parse_args()
    if args.child:
        sys.path.insert(0, str(Path(__file__).parent))
        fn = child_filters if args.child == "filters" else child_train
        result = fn(args.store, args.pairs, args.dim)
        result["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps(result, default=float))
        return 0
    store = build_store(args.chunks, args.dim)
    rate = gemm_rate()
    print(
        f"{args.chunks:,} chunks × {args.dim}-d, {args.pairs:,} pairs; GEMM {rate / 1e9:.1f} GFLOPS"
    )
    phases = ["filters", "train"] if args.phase == "all" else [args.phase]
    for phase in phases:
        result, seconds, rss = run_child(phase, store, args.pairs, args.dim)
        print(
            f"{phase}: {seconds:.0f} s = {seconds / LIMIT_S:.2f} × the 15-minute limit; "
            f"peak RSS {rss / 2**30:.2f} GB = {rss / LIMIT_RSS:.2f} × 4 GB"
        )
        if phase == "filters":
            ideal = result["flops"] / rate
            print(
                f"  read {result['read_s']:.0f} s, scan {result['scan_s']:.0f} s "
                f"(ideal {ideal:.0f} s at the GEMM rate = {ideal / result['scan_s']:.2f}); "
                f"{result['flagged']:,} pairs flagged; estimate "
                f"{result['estimate'] / 2**30:.2f} GB"
            )
        else:
            b, a = result["before"], result["after"]
            print(
                f"  held-out ({result['heldout_pairs']:,} of "
                f"{result.get('heldout_pairs_available', result['heldout_pairs']):,}): "
                f"recall@1 {b['recall@1']:.3f} → {a['recall@1']:.3f}, "
                f"MRR {b['mrr']:.3f} → {a['mrr']:.3f}; strength {result['strength']}, "
                f"{result['epochs']} epochs, validation {result['validation_ranking']}, "
                f"hard negatives from the {result['hard_negatives_from']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
