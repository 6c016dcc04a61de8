"""A local Deep Memory model leaves dmdesk (issue 25 A): `dmdesk export --format
sentence-transformers` writes a folder that `SentenceTransformer(DEST)` loads in a process where
`import dmdesk` fails; its `encode_query` ranks the store exactly as `dmdesk search --deep-memory`
does and `encode_document` reproduces the store's embeddings; the README's application snippets
run there too.

The whole flow is real: `dmdesk import` embeds real text (pydoc's topics) with the bundled
MiniLM, the test LLM server writes the questions, the local engine trains. The trained transform
is then replaced by a fixed rotation-like matrix far from the identity: on 40 chunks the guard
often keeps W = I, and an export checked against the identity could not tell a dropped Dense
layer from a working one."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dmdesk.testing.cli import dmdesk_env, run_dmdesk
from dmdesk.testing.llm_server import FakeLLMServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ["How do I define a function?", "What does the with statement do?", "loop over items"]
N_DOCS = 40
NO_DMDESK = "import sys\nsys.modules['dmdesk'] = None  # `import dmdesk` fails from here on\n"


def run_without_dmdesk(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Python code in a fresh process where dmdesk cannot be imported."""
    script = cwd / "app.py"
    script.write_text(NO_DMDESK + code)
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def readme_snippet(name: str) -> str:
    """The python block of the README that follows `<!-- snippet: NAME -->`."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(rf"<!-- snippet: {name} -->\s*```python\n(.*?)```", text, re.S)
    assert found, f"README has no snippet {name!r}"
    return found.group(1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from pydoc_data.topics import topics

    root = tmp_path_factory.mktemp("export")
    names = sorted(topics)[:N_DOCS]
    docs = [{"_id": f"t-{n}", "title": n, "text": topics[n][:700]} for n in names]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs))
    with FakeLLMServer() as llm:
        env = dmdesk_env(
            root,
            vector_store_path=root / "store",
            deep_memory_backend="local",
            llm_base_url=llm.base_url,
            llm_model="test-model",
            embedding="local",
        ) | {"HOME": str(root)}

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            out = run_dmdesk(env, *args, timeout=600)
            assert out.returncode == 0, (args, out.stdout, out.stderr)
            return out

        cli("import", str(root / "corpus.jsonl"))
        cli("generate", "--wait")
        cli("review", "1", "--approve-all")
        cli("train", "1", "--wait")
        rng = np.random.default_rng(5)
        W = (np.eye(384) + 0.6 * rng.standard_normal((384, 384)) / np.sqrt(384)).astype(np.float32)
        np.savez(root / "data" / "adapters" / "run-1.npz", matrix=W)
        cli("activate", "1")
        searched = {
            q: [
                h["id"]
                for h in json.loads(cli("search", q, "--deep-memory", "-k", "10", "--json").stdout)
            ]
            for q in QUERIES
        }
        plain = {
            q: [h["id"] for h in json.loads(cli("search", q, "-k", "10", "--json").stdout)]
            for q in QUERIES
        }
        st_dir, raw_dir = root / "deep-memory-run-1", root / "deep-memory-run-1-raw"
        said = cli("export", "1", str(st_dir), "--format", "sentence-transformers").stdout
        cli("export", "1", str(raw_dir), "--format", "safetensors")
        refused = run_dmdesk(env, "export", "1", str(st_dir), "--format", "safetensors")

    # the store's rows, for the process without dmdesk
    from dmdesk.vectorstore.service import VectorStoreService

    store = VectorStoreService(str(root / "store"))
    n = store.row_count()
    np.save(root / "store_embeddings.npy", store.read_embeddings(n))
    (root / "store.json").write_text(
        json.dumps({"ids": store.read_ids(n), "texts": store.read_texts(list(range(n)))})
    )
    store.close()
    return {
        "root": root,
        "st_dir": st_dir,
        "raw_dir": raw_dir,
        "W": W,
        "searched": searched,
        "plain": plain,
        "said": said,
        "refused": refused,
    }


CHECK = """
import json
import numpy as np
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("deep-memory-run-1")
store = json.load(open("store.json"))
emb = np.load("store_embeddings.npy")
docs = model.encode_document(store["texts"])
queries = model.encode_query(QUERIES)
ranked = {q: [store["ids"][i] for i in np.argsort(-(emb @ v), kind="stable")[:10]]
          for q, v in zip(QUERIES, queries)}
plain = model.encode(store["texts"][:3])
print(json.dumps({"doc_error": float(np.abs(docs - emb).max()),
                  "plain_error": float(np.abs(plain - emb[:3]).max()),
                  "ranked": ranked}))
"""


def test_the_export_loads_without_dmdesk_and_ranks_as_dmdesk_search(exported) -> None:
    root = exported["root"]
    out = run_without_dmdesk(f"QUERIES = {QUERIES!r}\n" + CHECK, root)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["doc_error"] < 1e-5  # encode_document = the store's own embeddings
    assert result["plain_error"] < 1e-5  # a plain encode is the document route
    assert result["ranked"] == exported["searched"]
    # the transform matters: with it the ranking differs from plain search
    assert any(exported["searched"][q] != exported["plain"][q] for q in QUERIES)


def test_a_folder_that_is_not_new_is_refused_and_left_alone(exported) -> None:
    refused = exported["refused"]
    assert refused.returncode == 2 and "not an empty folder" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert (exported["st_dir"] / "modules.json").is_file()


def test_the_model_card_names_the_run_the_store_the_figures_and_the_verdict(exported) -> None:
    card = (exported["st_dir"] / "README.md").read_text()
    assert "run #1" in card and str(exported["root"] / "store") in card
    assert "`local` (384-d)" in card and "| mrr |" in card
    assert "activation guard" in card and ("activated" in card)
    facts = json.loads((exported["st_dir"] / "dmdesk_export.json").read_text())
    assert facts["run_id"] == 1 and facts["format"] == "sentence-transformers"
    assert "Deep Memory model" in exported["said"]


def test_the_raw_transform_is_w_and_applies_in_three_lines(exported) -> None:
    from safetensors.numpy import load_file

    W = load_file(str(exported["raw_dir"] / "deep_memory.safetensors"))["weight"]
    assert np.array_equal(W, exported["W"])
    card = (exported["raw_dir"] / "README.md").read_text()
    assert "normalise(W q)" in card and not (exported["raw_dir"] / "modules.json").exists()


def test_readme_sentence_transformers_snippet_runs_without_dmdesk(exported) -> None:
    root = exported["root"]
    code = readme_snippet("sentence-transformers")
    code += "\nimport json\nprint(json.dumps(np.asarray(query).tolist()))\n"
    out = run_without_dmdesk("import numpy as np\n" + code, root)
    assert out.returncode == 0, out.stderr
    query = np.asarray(json.loads(out.stdout.strip().splitlines()[-1]))
    emb = np.load(root / "store_embeddings.npy")
    ids = json.loads((root / "store.json").read_text())["ids"]
    first = QUERIES[0]
    assert [ids[i] for i in np.argsort(-(emb @ query.ravel()))[:10]] == exported["searched"][first]


def test_readme_llamaindex_snippet_runs_without_dmdesk(exported) -> None:
    root = exported["root"]
    code = readme_snippet("llamaindex")
    code += "\nimport json\nprint(json.dumps(list(query)))\n"
    out = run_without_dmdesk(code, root)
    assert out.returncode == 0, out.stderr
    query = np.asarray(json.loads(out.stdout.strip().splitlines()[-1]))
    query = query / np.linalg.norm(query)  # LlamaIndex ranks by cosine similarity
    emb = np.load(root / "store_embeddings.npy")
    ids = json.loads((root / "store.json").read_text())["ids"]
    first = QUERIES[0]
    assert [ids[i] for i in np.argsort(-(emb @ query))[:10]] == exported["searched"][first]


def test_readme_numpy_snippet_applies_the_raw_transform(exported) -> None:
    root = exported["root"]
    code = readme_snippet("numpy")
    rng = np.random.default_rng(1)
    q0 = rng.standard_normal(384).astype(np.float32)
    prelude = f"import numpy as np\nq = np.array({q0.tolist()!r}, dtype=np.float32)\n"
    code += "\nimport json\nprint(json.dumps(q.tolist()))\n"
    out = run_without_dmdesk(prelude + code, root)
    assert out.returncode == 0, out.stderr
    got = np.asarray(json.loads(out.stdout.strip().splitlines()[-1]))
    want = exported["W"] @ q0
    assert np.allclose(got, want / np.linalg.norm(want), atol=1e-6)


def test_readme_deeplake_cloud_snippet_runs_against_deeplakes_real_client(tmp_path) -> None:
    """deeplake 3.9's own VectorStore and client, in a process without dmdesk; only the HTTP
    answers come from the loopback stand-in (its store embedded with the test server's
    embedding). The search must be the managed database's Deep Memory query."""
    import importlib.metadata

    from dmdesk.testing.activeloop_server import ActiveloopServer
    from dmdesk.testing.llm_server import embedding_for

    home = tmp_path / "home"
    (home / ".activeloop").mkdir(parents=True)  # deeplake's PyPI version check: a fresh cache
    version = importlib.metadata.version("deeplake")
    (home / ".activeloop" / "pypi_version.json").write_text(json.dumps([version, 4e9]))
    with ActiveloopServer(tmp_path / "cloud") as server:
        ids = [f"chunk-{i}" for i in range(30)]
        server.create_store("kb", ids, [f"topic number {i} in detail" for i in range(30)])
        vector = list(embedding_for("How do I define a function?"))
        prelude = (
            "import deeplake.client.client as client, deeplake.client.config as config\n"
            f"config.USE_LOCAL_HOST = True\nclient.HUB_REST_ENDPOINT_LOCAL = {server.url!r}\n"
            "ACTIVELOOP_TOKEN = 'tok-test-1234'\n"
            f"def embed(text):\n    return {vector!r}\n"
        )
        code = readme_snippet("deeplake-cloud").replace("hub://my-org/my-store", "hub://org/kb")
        code += "\nimport json\nprint(json.dumps([str(i) for i in results['id']]))\n"
        script = tmp_path / "app.py"
        script.write_text(NO_DMDESK + prelude + code)
        out = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env={"HOME": str(home), "BUGGER_OFF": "true", "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        found = json.loads(out.stdout.strip().splitlines()[-1])
        assert len(found) == 5 and set(found) <= set(ids)
        (query,) = [b["query"] for b in server.calls("POST", "/api/query/dataset/org/kb")]
        assert "deepmemory_distance" in query
