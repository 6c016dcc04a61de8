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

   Also: the questions as a *question index* (doc2query-style): every approved question is an
   extra vector tied to its chunk, and a chunk scores by its best match over its text and its
   questions — no model at all.

    python bench/real_questions.py [--no-filters] [--questions N] [--evaluation-set]

`--questions N` generates N questions per chunk (the prompt's styles in turn: a natural question,
a how-do-I question, a keyword query). `--evaluation-set` saves every other human question (the
even ones) as the store's evaluation set before training, so the guard judges on them, and
reports the other half apart: the figures on the half the guard never saw are the honest ones.

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
from html.parser import HTMLParser
from pathlib import Path

from dmdesk.jobs.runner import run_job

FAQ = Path("/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz")
PYTHON_FAQ = Path("/usr/share/doc/python3-doc/html/faq")
CHUNK_CHARS = 900
HEADING = re.compile(r"^(\d+)\.(\d+)\.\s+(\S.*)$")
CHAPTER = re.compile(r"^(\d+)\.\s+(\S.*)$")


def ensure_package(path: Path, package: str) -> Path:
    if path.exists():
        return path
    if os.geteuid() != 0:
        sys.exit(f"bench/real_questions.py needs the Debian package {package} (apt-get install)")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        check=True,
        env=os.environ | {"DEBIAN_FRONTEND": "noninteractive"},
    )
    return path


def ensure_faq() -> Path:
    return ensure_package(FAQ, "debian-faq")


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


class _FaqPage(HTMLParser):
    """The sections of one Sphinx page of the Python FAQ: (heading, paragraphs) in order."""

    BLOCKS = frozenset({"p", "pre", "li", "dt", "dd"})

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[tuple[str, list[str]]] = []
        self._in_body = False
        self._heading: list[str] | None = None
        self._block: list[str] | None = None
        self._depth = 0
        self._skip = 0
        self._nav = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "div" and a.get("role") == "main":
            self._in_body = True
        if not self._in_body:
            return
        if tag == "nav":
            self._nav += 1  # the page's table of contents: every question of the page
        elif tag == "a" and "headerlink" in (a.get("class") or ""):
            self._skip += 1  # the "¶" marks
        elif tag in ("h1", "h2", "h3", "h4"):
            self._heading = []
        elif tag in self.BLOCKS and self._block is None and self._heading is None:
            self._block, self._depth = [], 0
        if self._block is not None and tag in self.BLOCKS:
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if not self._in_body:
            return
        if tag == "nav" and self._nav:
            self._nav -= 1
        elif tag == "a" and self._skip:
            self._skip -= 1
        elif tag in ("h1", "h2", "h3", "h4") and self._heading is not None:
            self.sections.append((" ".join("".join(self._heading).split()), []))
            self._heading = None
        elif self._block is not None and tag in self.BLOCKS:
            self._depth -= 1
            if self._depth == 0:
                text = " ".join("".join(self._block).split())
                if text and self.sections:
                    self.sections[-1][1].append(text)
                self._block = None

    def handle_data(self, data: str) -> None:
        if self._skip or self._nav:
            return
        if self._heading is not None:
            self._heading.append(data)
        elif self._block is not None:
            self._block.append(data)


def parse_python_faq(folder: Path) -> tuple[list[dict], list[dict], list[tuple[str, str]]]:
    """(corpus docs, queries, qrels) from the Python FAQ (Debian package python3-doc): its
    question headings are the queries, the answer's first chunk the relevant one."""
    docs, queries, qrels = [], [], []
    for page in sorted(folder.glob("*.html")):
        if page.stem == "index":
            continue
        parser = _FaqPage()
        parser.feed(page.read_text(encoding="utf-8"))
        for n, (title, paras) in enumerate(parser.sections):
            parts = chunked(paras)
            key = f"{page.stem}:{n}"
            for k, part in enumerate(parts):
                docs.append({"_id": f"pyfaq:{key}:{k}", "text": part})
            if title.endswith("?") and parts:
                queries.append({"_id": f"q{key}", "text": title})
                qrels.append((f"q{key}", f"pyfaq:{key}:0"))
    return docs, queries, qrels


SETS = {
    "debian-faq": ("Debian FAQ", lambda: parse_faq(ensure_faq())),
    "python-faq": (
        "Python FAQ",
        lambda: parse_python_faq(ensure_package(PYTHON_FAQ, "python3-doc")),
    ),
}


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
    ap.add_argument("--questions", type=int, default=1, help="questions per chunk (default 1)")
    ap.add_argument(
        "--evaluation-set",
        action="store_true",
        help="save the even human questions as the evaluation set; report the odd ones apart",
    )
    ap.add_argument("--set", choices=sorted(SETS), default="debian-faq", help="question set")
    args = ap.parse_args()
    label, parse = SETS[args.set]
    docs, queries, qrels = parse()
    work = Path(tempfile.mkdtemp(prefix="dmdesk-realq-"))
    beir = work / "beir"
    write_beir(beir, docs, queries, qrels)
    print(f"{label}: {len(queries)} human questions, {len(docs)} chunks", flush=True)

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
        questions_per_chunk=args.questions,
    )
    ctx = build_context(config)
    t0 = time.perf_counter()
    retrieval.import_corpus(ctx, beir / "corpus.jsonl")
    print(f"imported in {time.perf_counter() - t0:.0f} s", flush=True)

    cache = questions_cache(args.set)
    cached = _load_cache(cache)
    from dmdesk.llm.local_generator import LocalGenerator

    class CachedGenerator(LocalGenerator):
        async def generate(self, text: str, n: int) -> list[str]:
            # One question per chunk is written as it always was; several come in the prompt's
            # styles since issue 25, under their own keys.
            key = f"{n}:{text}" if n == 1 else f"styles:{n}:{text}"
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

    run = run_job(runs.ctx, runs.start_generation().id, progress)
    print(f"generated {run.pair_count} pairs in {time.perf_counter() - t0:.0f} s", flush=True)
    counts = runs.review_counts(run.id)
    approved = runs.approve_all(run.id)
    print(f"filters flagged {counts['flagged']} of {run.pair_count}; approved {approved}")
    labelled = retrieval.read_labelled(beir / "queries.jsonl", beir / "qrels.tsv")
    halves = {"all": labelled}
    if args.evaluation_set:
        texts, rel = labelled
        halves["evaluation set (even)"] = (texts[0::2], rel[0::2])
        halves["never seen (odd)"] = (texts[1::2], rel[1::2])
        saved = retrieval.evaluate(ctx, *halves["evaluation set (even)"], [1], save_as="even")
        print(f"evaluation set: {saved['saved']}", flush=True)
    runs.start_training(run.id)
    run = run_job(runs.ctx, run.id)
    decision = (run.metrics or {}).get("activation", {})
    print(f"training: {run.status.value}; {decision.get('reason')}", flush=True)
    print(f"judged on {decision.get('judged_on', 'synthetic questions')}", flush=True)

    pairs = [p for p in runs.list_pairs(run.id) if p.approved]
    served = {name: retrieval.evaluate(ctx, *qs, [1, 3, 5, 10]) for name, qs in halves.items()}
    measure_index = question_index(ctx, pairs)
    indexed = {name: measure_index(*qs) for name, qs in halves.items()}
    from dmdesk.deepmemory import adapters

    adapters.activate(ctx.config.data_dir, run.id, ctx.config.vector_store_path)
    trained = {name: retrieval.evaluate(ctx, *qs, [1, 3, 5, 10]) for name, qs in halves.items()}
    worse = []
    for name in halves:
        without = served[name]["without"]
        used = served[name].get("with", without)
        model = trained[name].get("with", without)
        index = indexed[name]
        print()
        print(f"{name}: {without['queries']} human-written questions")
        head = ("without", "search now", "trained model", "question index")
        print(f"  {'':<10} {head[0]:>9} {head[1]:>11} {head[2]:>14} {head[3]:>15}")
        for key in ("recall@1", "recall@10", "mrr"):
            print(
                f"  {key:<10} {without[key]:>9.3f} {used[key]:>11.3f} {model[key]:>14.3f}"
                f" {index[key]:>15.3f}"
            )
            if used[key] < without[key] - 1e-12:
                worse.append(f"{name} {key}")
        lift = (used["recall@1"] / without["recall@1"] - 1) if without["recall@1"] else 0.0
        ilift = (index["recall@1"] / without["recall@1"] - 1) if without["recall@1"] else 0.0
        print(f"  recall@1 lift: search now {lift:+.1%}, question index {ilift:+.1%} (target +10%)")
    print()
    print(f"model activated: {decision.get('activated')}; pairs kept {approved}/{run.pair_count}")
    print(f"never worse: {'yes' if not worse else 'NO: ' + ', '.join(worse)}")
    ctx.dispose()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if worse else 0


def question_index(ctx, pairs):
    """The question index's measure: a function giving recall@1/10 and MRR of labelled
    questions when every approved question is an extra vector of its chunk and a chunk scores
    by its best match over its text and its questions (doc2query-style). The store and the
    approved questions are embedded once here; the bench's stores are small, so the scores are
    one matrix."""
    import numpy as np

    from dmdesk.deepmemory.metrics import metrics_from_ranks
    from dmdesk.services.retrieval import _embedding

    embed = _embedding(ctx)
    store = ctx.vector_store_factory(ctx.config.vector_store_path)
    ids, corpus = store.corpus_embeddings(embed)
    row_of = {cid: i for i, cid in enumerate(ids)}
    extra = [p for p in pairs if p.chunk_id in row_of]
    e = embed([p.question for p in extra]) if extra else None
    rows = np.asarray([row_of[p.chunk_id] for p in extra])

    def measure(questions, relevant_ids) -> dict[str, float]:
        kept = [
            (t, [row_of[c] for c in rel if c in row_of])
            for t, rel in zip(questions, relevant_ids, strict=True)
        ]
        kept = [k for k in kept if k[1]]
        q = embed([t for t, _ in kept])
        scores = q @ corpus.T
        if e is not None:
            np.maximum.at(scores.T, rows, (q @ e.T).T)  # each chunk: its best match
        ranks = [
            1 + int((scores[i] > scores[i, rel].max()).sum()) for i, (_, rel) in enumerate(kept)
        ]
        return metrics_from_ranks(ranks, (1, 10))

    return measure


def questions_cache(name: str) -> Path:
    import platformdirs

    path = Path(platformdirs.user_cache_dir("dmdesk")) / "bench" / f"{name}-questions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _load_cache(path: Path) -> dict[str, list[str]]:
    if not path.is_file():
        return {}
    return {o["key"]: o["q"] for o in map(json.loads, path.read_text().splitlines())}


if __name__ == "__main__":
    sys.exit(main())
