"""Benchmark: the local Deep Memory engine on a real corpus with generated questions.

Corpus: Python's reference topics (`pydoc_data.topics`, shipped with CPython) chunked as the demo
does (533 chunks), embedded with all-MiniLM-L6-v2. Questions: one per chunk, written by dmdesk's
own generator — the local SmolLM2-135M model, or any OpenAI-compatible server with
`--base-url/--model`. Questions are cached under the user cache dir, so re-runs only train.

Trains on 80 % of the pairs (every 5th held out, as the engine does), and prints recall@1/10 and
MRR before/after on the held-out 20 %, the relative lift, training time and pairs/s; median of
`--repeats` trainings with different seeds.

    python bench/local_deep_memory.py [--limit N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import platformdirs

from dmdesk.deepmemory.local import LocalEngineParams, train_adapter
from dmdesk.deepmemory.metrics import holdout_split, retrieval_metrics
from dmdesk.demo import demo_chunks
from dmdesk.embeddings import LocalEmbedding, normalise


def questions(chunks, args) -> list[str]:
    tag = "local" if not args.base_url else args.model.replace("/", "_")
    cache = Path(platformdirs.user_cache_dir("dmdesk")) / "bench" / f"pydoc-questions-{tag}.jsonl"
    cache.parent.mkdir(parents=True, exist_ok=True)
    have = {}
    if cache.is_file():
        have = {o["id"]: o["q"] for o in map(json.loads, cache.read_text().splitlines())}
    todo = [(cid, text) for cid, text, _ in chunks if cid not in have]
    if todo:
        if args.base_url:
            from dmdesk.llm.openai_generator import OpenAIGenerator

            gen = OpenAIGenerator(model=args.model, base_url=args.base_url, api_key=None)
        else:
            from dmdesk.llm.local_generator import LocalGenerator

            gen = LocalGenerator()
        t0 = time.perf_counter()
        with cache.open("a") as out:
            for n, (cid, text) in enumerate(todo, 1):
                q = asyncio.run(gen.generate(text, 1))[0]
                out.write(json.dumps({"id": cid, "q": q}) + "\n")
                out.flush()
                have[cid] = q
                if n % 25 == 0:
                    rate = n / (time.perf_counter() - t0)
                    print(f"  generated {n}/{len(todo)} questions ({rate:.2f}/s)", flush=True)
    return [have[cid] for cid, _, _ in chunks]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--limit", type=int, default=None, help="use the first N chunks")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--base-url", default=None)
    p.add_argument("--model", default="gpt-4o-mini")
    args = p.parse_args()

    chunks = demo_chunks()[: args.limit]
    embed = LocalEmbedding()
    t0 = time.perf_counter()
    corpus = normalise(embed([t for _, t, _ in chunks]))
    qs = questions(chunks, args)
    queries = embed(qs)
    positives = np.arange(len(chunks))
    train, held = holdout_split(len(chunks))
    rel = [[int(i)] for i in held]
    before = retrieval_metrics(queries[held], corpus, rel)
    runs = []
    for seed in range(args.repeats):
        t = time.perf_counter()
        W, hist = train_adapter(
            queries,
            corpus,
            positives,
            train,
            held,
            LocalEngineParams(seed=seed),
            lambda *a: None,
            threading.Event(),
        )
        secs = time.perf_counter() - t
        after = retrieval_metrics(normalise(queries[held] @ W.T), corpus, rel)
        runs.append((after, secs, len(hist)))
    med = lambda key: statistics.median(r[0][key] for r in runs)  # noqa: E731
    secs = statistics.median(r[1] for r in runs)
    epochs = statistics.median(r[2] for r in runs)
    print(
        f"corpus: pydoc_data.topics, {len(chunks)} chunks; questions by "
        f"{'SmolLM2-135M (local)' if not args.base_url else args.model}; "
        f"{len(train)} train / {len(held)} held-out pairs; setup {time.perf_counter() - t0:.0f} s"
    )
    for key in ("recall@1", "recall@10", "mrr"):
        b, a = before[key], med(key)
        lift = (a - b) / b if b else float("nan")
        print(
            f"{key:<10} before {b:.3f}  after {a:.3f}  ratio after/before {a / b if b else 0:.3f}"
            f"  (lift {lift:+.1%})"
        )
    print(
        f"training: {secs:.1f} s median of {args.repeats}, {epochs:.0f} epochs, "
        f"{len(train) * epochs / secs:.0f} pairs/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
