"""Benchmark: does Deep Memory trained on dmdesk's own questions help on real, human-written ones?

Data: the Debian FAQ (Debian package `debian-faq`, installed here when missing and root). Its
question headings ("How can I install a package…?") are the human-written queries; each answer
is chunked (paragraphs merged up to CHUNK_CHARS), the answer's first chunk is the relevant one,
and every other chunk — the rest of long answers, and the chapters' introductions — is a
distractor. A BEIR folder is written, then the whole user path runs through dmdesk's services on
a temporary data dir (never the user's own config):

1. `dmdesk import` of the corpus with `DMDESK_EMBEDDING=local` (all-MiniLM-L6-v2);
2. generation with dmdesk's own generator over every chunk (the local SmolLM2-135M model, no key;
   its questions are cached under the user cache dir so re-runs only train), with the quality
   filters at their defaults;
3. review: "Approve all" (unflagged pairs only, as the GUI's default);
4. training with the local engine, and the activation guard's verdict;
5. `dmdesk evaluate` on the human questions: recall@1/10 and MRR without Deep Memory, with the
   model dmdesk's search now uses (the guard's choice), and with the trained model regardless.

    python bench/real_questions.py [--no-filters]

Target (issue 10): the model search uses is never worse than no Deep Memory on recall@1,
recall@10 or MRR; and ideally recall@1 +10 % relative.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FAQ = Path("/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz")
CHUNK_CHARS = 900
HEADING = re.compile(r"^(\d+)\.(\d+)\.\s+(\S.*)$")
CHAPTER = re.compile(r"^(\d+)\.\s+(\S.*)$")


def ensure_faq() -> Path:
    if FAQ.is_file():
        return FAQ
    if os.geteuid() != 0:
        sys.exit("bench/real_questions.py needs the Debian package debian-faq (apt-get install)")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "debian-faq"],
        check=True,
        env=os.environ | {"DEBIAN_FRONTEND": "noninteractive"},
    )
    return FAQ


def paragraphs(lines: list[str]) -> list[str]:
    out, cur = [], []
    for ln in lines:
        if ln.strip():
            cur.append(ln.strip())
        elif cur:
            out.append(" ".join(cur))
            cur = []
    if cur:
        out.append(" ".join(cur))
    return out


def chunked(paras: list[str]) -> list[str]:
    chunks, cur = [], ""
    for p in paras:
        if cur and len(cur) + len(p) > CHUNK_CHARS:
            chunks.append(cur)
            cur = ""
        cur = f"{cur}\n{p}".strip()
    if cur:
        chunks.append(cur)
    return chunks


def parse_faq(path: Path) -> tuple[list[dict], list[dict], list[tuple[str, str]]]:
    """(corpus docs, queries, qrels) from the FAQ's text edition."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        text = f.read().replace("\xa0", " ")
    body = text[text.index("Chapter 1.") :] if "Chapter 1." in text else text
    sections: list[tuple[str, str, list[str]]] = []  # (key, title, lines)
    for raw in body.splitlines():
        line = raw.rstrip()
        m = HEADING.match(line)
        c = CHAPTER.match(line) if not line.startswith(" ") else None
        if m:
            sections.append((f"{m.group(1)}.{m.group(2)}", m.group(3), []))
        elif c and not m:
            sections.append((f"ch{c.group(1)}", c.group(2), []))
        elif sections:
            if sections[-1][2] == [] and line and not line.startswith("    "):
                # a heading that wraps onto the next line
                key, title, lines = sections[-1]
                sections[-1] = (key, f"{title} {line.strip()}", lines)
            else:
                sections[-1][2].append(line)
    docs, queries, qrels = [], [], []
    for key, title, lines in sections:
        parts = chunked(paragraphs(lines))
        for n, part in enumerate(parts):
            docs.append({"_id": f"faq:{key}:{n}", "text": part})
        if not key.startswith("ch") and title.endswith(("?", "?!")) and parts:
            queries.append({"_id": f"q{key}", "text": title})
            qrels.append((f"q{key}", f"faq:{key}:0"))
    return docs, queries, qrels


def write_beir(folder: Path, docs, queries, qrels) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (folder / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels)
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-filters", action="store_true", help="approve every pair (no filters)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    args = ap.parse_args()
    faq = ensure_faq()
    docs, queries, qrels = parse_faq(faq)
    work = Path(tempfile.mkdtemp(prefix="dmdesk-realq-"))
    beir = work / "beir"
    write_beir(beir, docs, queries, qrels)
    print(f"Debian FAQ: {len(queries)} human questions, {len(docs)} chunks", flush=True)

    for key in list(os.environ):
        if key.startswith("DMDESK_") or key in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            del os.environ[key]
    os.environ["DMDESK_CONFIG_FILE"] = str(work / "config.toml")
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"
    from dmdesk.config import load_config
    from dmdesk.services import retrieval
    from dmdesk.services.context import build_context
    from dmdesk.services.runs import TrainingRunService

    config = load_config(
        data_dir=work / "data",
        vector_store_path=str(work / "store"),
        embedding="local",
        deep_memory_backend="local",
        generation_concurrency=1,
        quality_filters=not args.no_filters,
    )
    ctx = build_context(config)
    t0 = time.perf_counter()
    retrieval.import_corpus(ctx, beir / "corpus.jsonl")
    print(f"imported in {time.perf_counter() - t0:.0f} s", flush=True)

    cache = questions_cache()
    cached = _load_cache(cache)
    from dmdesk.llm.local_generator import LocalGenerator

    class CachedGenerator(LocalGenerator):
        async def generate(self, text: str, n: int) -> list[str]:
            key = f"{n}:{text}"
            if key not in cached:
                cached[key] = await super().generate(text, n)
                with cache.open("a", encoding="utf-8") as f:
                    f.write(json.dumps({"key": key, "q": cached[key]}) + "\n")
            return cached[key]

    ctx.generator_factory = lambda snapshot, cfg: CachedGenerator()
    runs = TrainingRunService(ctx)
    t0 = time.perf_counter()
    last = [0.0]

    def progress(u) -> None:
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            print(f"  generation {u.processed}/{u.total} {u.message}", flush=True)

    run = runs.run_job(runs.start_generation().id, progress)
    print(f"generated {run.pair_count} pairs in {time.perf_counter() - t0:.0f} s", flush=True)
    counts = runs.review_counts(run.id)
    approved = runs.approve_all(run.id)
    print(f"filters flagged {counts['flagged']} of {run.pair_count}; approved {approved}")
    runs.start_training(run.id)
    run = runs.run_job(run.id)
    decision = (run.metrics or {}).get("activation", {})
    print(f"training: {run.status.value}; {decision.get('reason')}", flush=True)

    labelled = retrieval.read_labelled(beir / "queries.jsonl", beir / "qrels.tsv")
    served = retrieval.evaluate(ctx, *labelled, [1, 3, 5, 10])
    from dmdesk.deepmemory import adapters

    adapters.activate(ctx.config.data_dir, run.id, ctx.config.vector_store_path)
    trained = retrieval.evaluate(ctx, *labelled, [1, 3, 5, 10])
    without = served["without"]
    used = served.get("with", without)
    model = trained.get("with", without)
    print()
    print(f"on {without['queries']} human-written questions   without   search now   trained model")
    worse = []
    for key in ("recall@1", "recall@10", "mrr"):
        print(f"  {key:<10} {without[key]:>29.3f} {used[key]:>12.3f} {model[key]:>15.3f}")
        if used[key] < without[key] - 1e-12:
            worse.append(key)
    lift = (used["recall@1"] / without["recall@1"] - 1) if without["recall@1"] else 0.0
    print(f"model activated: {decision.get('activated')}; pairs kept {approved}/{run.pair_count}")
    print(f"never worse: {'yes' if not worse else 'NO: ' + ', '.join(worse)}")
    print(f"recall@1 lift of what search uses: {lift:+.1%} (target +10 %)")
    ctx.dispose()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if worse else 0


def questions_cache() -> Path:
    import platformdirs

    path = Path(platformdirs.user_cache_dir("dmdesk")) / "bench" / "debian-faq-questions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _load_cache(path: Path) -> dict[str, list[str]]:
    if not path.is_file():
        return {}
    return {o["key"]: o["q"] for o in map(json.loads, path.read_text().splitlines())}


if __name__ == "__main__":
    sys.exit(main())
