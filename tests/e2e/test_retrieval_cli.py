"""`dmdesk import` then `dmdesk evaluate` on a small BEIR-style folder: the recall figures equal a
direct numpy computation over the same embeddings (the test server's hashed embeddings)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dmdesk.testing.llm_server import embedding_for

WORDS = [f"w{i}" for i in range(400)]


def beir_folder(root: Path, n_docs: int = 60, n_queries: int = 25) -> dict:
    rng = np.random.default_rng(3)
    docs = {}
    for i in range(n_docs):
        words = rng.choice(WORDS, size=12)
        docs[f"d{i}"] = {"_id": f"d{i}", "title": f"Doc {i}", "text": " ".join(words)}
    queries, qrels = {}, []
    for j in range(n_queries):
        target = [f"d{int(x)}" for x in rng.choice(n_docs, size=rng.integers(1, 3), replace=False)]
        words = docs[target[0]]["text"].split()[:4] + list(rng.choice(WORDS, size=3))
        queries[f"q{j}"] = {"_id": f"q{j}", "text": " ".join(words)}
        qrels += [(f"q{j}", t, 1) for t in target]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs.values()))
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries.values()))
    (root / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "\n".join(f"{a}\t{b}\t{c}" for a, b, c in qrels)
    )
    return {"docs": docs, "queries": queries, "qrels": qrels}


def numpy_recall(data: dict, ks: list[int]) -> dict[str, float]:
    ids = list(data["docs"])
    corpus = np.array([embedding_for(f"{d['title']}\n{d['text']}") for d in data["docs"].values()])
    rel: dict[str, set[int]] = {}
    for q, d, _ in data["qrels"]:
        rel.setdefault(q, set()).add(ids.index(d))
    out = {}
    scores = {q: corpus @ np.array(embedding_for(data["queries"][q]["text"])) for q in rel}
    for q, r in rel.items():  # a tie would make any ranking convention arbitrary
        for x in r:
            assert np.sum(scores[q] == scores[q][x]) == 1, f"tie for {q}"
    order = {q: np.argsort(-s) for q, s in scores.items()}
    for k in ks:
        out[f"recall@{k}"] = float(
            np.mean([len(set(order[q][:k]) & r) / len(r) for q, r in rel.items()])
        )
    out["mrr"] = float(
        np.mean(
            [1 / (1 + min(int(np.where(order[q] == x)[0][0]) for x in r)) for q, r in rel.items()]
        )
    )
    return out


def test_import_then_evaluate_equals_a_direct_numpy_computation(tmp_path, run_cli) -> None:
    data = beir_folder(tmp_path)
    imported = run_cli("import", str(tmp_path / "corpus.jsonl"))
    assert imported.returncode == 0, imported.stderr
    assert "Imported 60 documents" in imported.stdout
    # its own progress, in its own words (it used to read "generation: 1/1 chunks, 0 pairs")
    assert "embedding 60 documents: 60/60" in imported.stderr
    assert "writing 60 documents to the store" in imported.stderr
    assert "generation" not in imported.stderr and "chunks" not in imported.stderr
    again = run_cli("import", str(tmp_path / "corpus.jsonl"))
    assert "Imported 0 documents" in again.stdout and "60 already there" in again.stdout

    out = run_cli(
        "evaluate",
        str(tmp_path / "queries.jsonl"),
        str(tmp_path / "qrels.tsv"),
        "-k",
        "1,3,5,10",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert "with" not in result  # no Deep Memory trained yet
    want = numpy_recall(data, [1, 3, 5, 10])
    for key, value in want.items():
        assert result["without"][key] == pytest.approx(value, abs=1e-9), key


def test_search_json_contract(tmp_path, run_cli) -> None:
    data = beir_folder(tmp_path)
    assert run_cli("import", str(tmp_path / "corpus.jsonl")).returncode == 0
    doc = data["docs"]["d7"]
    hits = json.loads(
        run_cli("search", f"{doc['title']}\n{doc['text']}", "-k", "4", "--json").stdout
    )
    assert [set(h) for h in hits] == [{"id", "score", "text"}] * 4
    assert hits[0]["id"] == "d7" and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (("import", "/nonexistent.jsonl"), 2, "does not exist"),
        (("evaluate", "/nope.jsonl", "/nope.tsv"), 2, "does not exist"),
        (("evaluate", "q.jsonl", "r.tsv", "-k", "a,b"), 2, "whole numbers"),
        (("evaluate",), 2, "No evaluation set is saved for this store"),
        (("evaluate", "--save"), 2, "--save needs the questions"),
        (("evaluate", "q.jsonl"), 2, "needs its QRELS.tsv"),
        (("evaluate", "q.jsonl", "r.tsv", "--csv", "q.csv"), 2, "not both"),
        (("evaluate", "--csv", "/nope.csv"), 2, "does not exist"),
    ],
)
def test_bad_retrieval_input_gets_a_message_and_exit_code(run_cli, args, code, text) -> None:
    out = run_cli(*args)
    assert out.returncode == code and text in out.stderr and "Traceback" not in out.stderr


def test_verdicts_activation_and_export_from_the_command_line(
    tmp_path, run_cli, llm_server
) -> None:
    """generate (quality filters on) → review --list shows verdicts → approve-all leaves
    flagged pairs → train → `run` says whether the model is used → activate / --none →
    export JSONL and BEIR, which `dmdesk evaluate` reads back."""
    beir_folder(tmp_path)
    assert run_cli("import", str(tmp_path / "corpus.jsonl")).returncode == 0
    filters = {"DMDESK_QUALITY_FILTERS": "true"}
    gen = run_cli("generate", "--wait", "--json", extra_env=filters)
    assert gen.returncode == 0, gen.stderr
    listed = [
        json.loads(line) for line in run_cli("review", "1", "--list", "--json").stdout.splitlines()
    ]
    assert len(listed) == 60 and all("flags" in p for p in listed)
    flagged = [p for p in listed if p["flags"]]
    assert all(p["approved"] is False for p in flagged)
    approved = run_cli("review", "1", "--approve-all")
    assert approved.returncode == 0
    assert f"Approved {60 - len(flagged)} pairs" in approved.stdout
    if flagged:
        assert "flagged by the quality filters" in approved.stdout

    trained = run_cli("train", "1", "--wait", "--json")
    assert trained.returncode == 0, trained.stderr
    shown = run_cli("run", "1").stdout
    assert "model      " in shown and "guard      " in shown
    # no evaluation set: it says plainly that the verdict rests on synthetic questions
    assert "judged     No evaluation set: this verdict rests on synthetic questions" in shown
    assert run_cli("activate", "1").returncode == 0
    assert json.loads(run_cli("run", "1", "--json").stdout)["model_active"] is True
    assert run_cli("search", "w1 w2", "--deep-memory").returncode == 0
    off = run_cli("activate", "--none")
    assert off.returncode == 0 and "no longer uses Deep Memory" in off.stdout
    assert json.loads(run_cli("run", "1", "--json").stdout)["model_active"] is False
    assert run_cli("search", "w1 w2", "--deep-memory").returncode == 3

    out = tmp_path / "pairs.jsonl"
    assert run_cli("export", "1", str(out)).returncode == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 60 - len(flagged) and set(lines[0]) == {"query", "chunk_id", "pair_id"}
    beir = tmp_path / "beir"
    assert run_cli("export", "1", str(beir), "--format", "beir").returncode == 0
    assert len((beir / "corpus.jsonl").read_text().splitlines()) == 60
    evaluated = run_cli(
        "evaluate", str(beir / "queries.jsonl"), str(beir / "qrels" / "train.tsv"), "--json"
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["without"]["queries"] == len(lines)


def test_an_evaluation_set_is_saved_once_and_measured_again_without_its_files(
    tmp_path, run_cli, llm_server
) -> None:
    """`evaluate … --save` keeps the real questions as the store's evaluation set; `evaluate`
    alone measures them again; a CSV gives the same set; the next training run is judged on it
    and `dmdesk run` shows both verdicts; `--forget` drops it."""
    data = beir_folder(tmp_path)
    assert run_cli("import", str(tmp_path / "corpus.jsonl")).returncode == 0
    files = (str(tmp_path / "queries.jsonl"), str(tmp_path / "qrels.tsv"))
    saved = run_cli("evaluate", *files, "--save")
    assert saved.returncode == 0, saved.stderr
    assert "Saved as this store's evaluation set: 25 real questions from queries.jsonl" in (
        saved.stdout
    )
    first = json.loads(run_cli("evaluate", *files, "--json").stdout)
    again = run_cli("evaluate", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == first
    assert first["without"]["mrr"] == pytest.approx(numpy_recall(data, [1])["mrr"], abs=1e-9)

    rows = ["question,chunk_id"] + [
        f'"{data["queries"][q]["text"]}",{d}' for q, d, _ in data["qrels"]
    ]
    (tmp_path / "real.csv").write_text("\n".join(rows) + "\n")
    by_csv = run_cli("evaluate", "--csv", str(tmp_path / "real.csv"), "--save", "--json")
    assert by_csv.returncode == 0, by_csv.stderr
    assert json.loads(by_csv.stdout) == first  # JSON on stdout, the note on stderr
    assert "25 real questions from real.csv" in by_csv.stderr

    assert run_cli("generate", "--wait").returncode == 0
    assert run_cli("review", "1", "--approve-all").returncode == 0
    assert run_cli("train", "1", "--wait").returncode == 0
    run = json.loads(run_cli("run", "1", "--json").stdout)
    assert run["metrics"]["evaluation_set"]["questions"] == 25
    assert run["metrics"]["activation"]["judged_on"] == "real questions (the evaluation set)"
    shown = run_cli("run", "1").stdout
    assert "judged     Held-out synthetic questions" in shown
    assert "judged     Evaluation set (25 real questions): MRR" in shown

    gone = run_cli("evaluate", "--forget")
    assert gone.returncode == 0 and "Evaluation set removed." in gone.stdout
    assert run_cli("evaluate").returncode == 2
