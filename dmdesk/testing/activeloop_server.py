"""A loopback stand-in for Activeloop's HTTP API, so deeplake 3.9's *real* client code runs offline.

Tests of the DeepLake Cloud path drive deeplake's own `VectorStore("hub://org/name")`,
`DeepMemory` and `DeepMemoryBackendClient`; only the HTTP answers come from here. The shapes are
those of deeplake's own code and tests (`deeplake/client/test_client.py`,
`deeplake/client/client.py`):

* `GET /api/user/profile` → `{"_id", "name", "organizations"}`;
* `GET /api/org/{org}/ds/{name}/creds` → `{"path", "creds", "mode", "repository"}`. The path is a
  local folder under `root/vectordb/`: deeplake stores a `hub://` dataset in whatever storage
  the backend names, and a local path is one it accepts (`storage_provider_from_hub_path`,
  `is_local`);
* `POST /api/dataset/create`, `DELETE /api/dataset/{org}/{name}`, `POST /api/event`;
* `GET /api/organizations/{org}/features/deepmemory` → `{"available": bool}`;
* `POST /api/deepmemory/v1/train` → `{"job_id"}`; `GET …/jobs/{id}/status` → `{"id", "status",
  "progress": {"eta", "best_recall@10": "85.5% (+2.6)%", "error", …}}`; `POST …/jobs/{id}/cancel`;
* `POST /api/query/dataset/{org}/{name}` → `{"indices", "data"}`: the managed database's TQL
  vector search, computed here with numpy over the local dataset's embeddings.

Knobs (attributes of :class:`ActiveloopServer`, or `POST /_control`): `deep_memory_available`,
`job_scripts` (the states each new job walks through, one per status request), `cancel_refused`,
`fail` (route prefix → HTTP status, to answer 401/403/404/5xx), `outage` (close every
connection without a reply: what deeplake's client retries without end). Every request is
recorded in `requests` as `(method, path, json body)`.

Where deeplake's code cannot run offline at all, tests still need a stand-in (see README
"DeepLake Cloud tests"): `deep_memory.evaluate` runs TQL inside libdeeplake (C++, its own HTTP),
so this server cannot answer it.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from dmdesk.testing.llm_server import embedding_for
from dmdesk.vectorstore._deeplake import import_deeplake
from dmdesk.vectorstore.service import create_local_store

ARRAY = re.compile(r"ARRAY\[([^\]]*)\]")
LIMIT = re.compile(r"limit\s+(\d+)", re.I)


def completed_progress(best: str = "85.5% (+2.6)%") -> dict[str, Any]:
    return {
        "eta": None,
        "last_update_at": "2026-11-30T10:00:00.000000",
        "error": None,
        "train_recall@10": "87.8%",
        "best_recall@10": best,
        "epoch": 3,
        "base_val_recall@10": 0.8292181491851807,
        "val_recall@10": "85.5%",
        "dataset": "query",
        "split": 0,
        "loss": -0.054,
        "delta": 2.57,
    }


class ActiveloopServer:
    def __init__(self, root: Path, org: str = "org", user: str = "tester") -> None:
        self.root = Path(root)
        self.org = org
        self.user = user
        self.deep_memory_available = True
        self.job_scripts: list[list[str]] = []
        self.default_script = ["pending", "training", "completed"]
        self.cancel_refused = False
        self.fail: dict[str, int] = {}
        self.outage = False
        self.requests: list[tuple[str, str, Any]] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ActiveloopServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ActiveloopServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests read -----------------------------------------------------------------------

    def calls(self, method: str, prefix: str) -> list[Any]:
        with self._lock:
            return [b for m, p, b in self.requests if m == method and p.startswith(prefix)]

    def create_store(self, name: str, ids: list[str], texts: list[str], org: str = "org") -> Path:
        """A store `hub://org/name` as the managed database would hold it, embedded with the
        test LLM server's embedding (so questions embedded there match)."""
        import numpy as np

        path = self.dataset_dir(org, name)
        vectors = np.asarray([embedding_for(t) for t in texts], dtype=np.float32)
        create_local_store(path, ids, texts, embeddings=vectors)
        return path

    def dataset_dir(self, org: str, name: str) -> Path:
        # Under "vectordb/", as the Managed Tensor Database's storage is: deeplake picks its
        # `tensor_db` search (a remote TQL query) only for such a root.
        return self.root / "vectordb" / org / name

    # -- routes --------------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        with self._lock:
            self.requests.append((method, path, body))
        for prefix, status in self.fail.items():
            if path.startswith(prefix):
                return status, {"description": f"refused with {status}"}
        parts = [p for p in path.split("?")[0].split("/") if p]
        if path.startswith("/api/user/profile"):
            return 200, {
                "_id": self.user,
                "name": self.user,
                "organizations": [self.user, self.org],
            }
        if method == "GET" and parts[:2] == ["api", "org"] and parts[-1] == "creds":
            org, name = parts[2], parts[4]
            folder = self.dataset_dir(org, name)
            return 200, {"path": str(folder), "creds": {}, "mode": "a", "repository": None}
        if parts[:2] == ["api", "dataset"] or parts[:2] == ["api", "event"]:
            return 200, {}
        if parts[:2] == ["api", "organizations"] and parts[-1] == "deepmemory":
            return 200, {"available": self.deep_memory_available}
        if parts[:2] == ["api", "organizations"] and parts[-1] == "dataset_query":
            return 200, {"available": True}
        if parts[:4] == ["api", "deepmemory", "v1", "train"] and method == "POST":
            with self._lock:
                job_id = f"job-{len(self.jobs) + 1}"
                script = self.job_scripts.pop(0) if self.job_scripts else self.default_script
                self.jobs[job_id] = {"script": list(script), "body": body, "cancelled": False}
            return 200, {"job_id": job_id}
        if parts[:4] == ["api", "deepmemory", "v1", "jobs"] and len(parts) >= 6:
            return self._job(parts[4], parts[5], method)
        if parts[:3] == ["api", "query", "dataset"] and method == "POST":
            return self._query(parts[3], parts[4], (body or {}).get("query", ""))
        return 404, {"description": f"no route for {method} {path}"}

    def _job(self, job_id: str, action: str, method: str) -> tuple[int, Any]:
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None:
                return 404, {"description": f"Job {job_id} not found"}
            if action == "cancel" and method == "POST":
                if self.cancel_refused or job["script"][0] not in ("pending",):
                    return 400, {"description": "Only pending jobs can be cancelled"}
                job["script"] = ["cancelled"]
                job["cancelled"] = True
                return 200, {"cancelled": True}
            if action != "status":
                return 404, {"description": "no such action"}
            script = job["script"]
            state = script.pop(0) if len(script) > 1 else script[0]
        progress: Any
        if state == "pending":
            progress = None
        elif state == "failed":
            progress = {
                "eta": None,
                "last_update_at": "2026-11-30T10:00:00.000000",
                "error": "list indices must be integers or slices, not str",
                "dataset": "query",
            }
        elif state == "completed":
            progress = completed_progress()
        else:
            progress = {**completed_progress("61.0% (+1.2)%"), "eta": 100.34}
        return 200, {
            "id": job_id,
            "dataset_id": "some_dataset_id",
            "organization_id": self.org,
            "status": state,
            "progress": progress,
        }

    def _query(self, org: str, name: str, tql: str) -> tuple[int, Any]:
        import numpy as np

        deeplake = import_deeplake()
        ds = deeplake.load(str(self.dataset_dir(org, name)), read_only=True, verbose=False)
        match = ARRAY.search(tql)
        if match is None:
            return 422, {"description": "no ARRAY[] in the query"}
        q = np.asarray([float(v) for v in match.group(1).split(",")], dtype=np.float32)
        found = LIMIT.search(tql)
        limit = int(found.group(1)) if found else 4
        emb = np.asarray(ds["embedding"].numpy(), dtype=np.float32)
        norms = np.linalg.norm(emb, axis=1) * (np.linalg.norm(q) or 1.0)
        scores = (emb @ q) / np.where(norms == 0, 1.0, norms)
        top = np.argsort(-scores)[:limit].tolist()
        texts = [str(ds["text"][i].data()["value"]) for i in top]
        ids = [str(ds["id"][i].data()["value"]) for i in top]
        return 200, {
            "indices": top,
            "data": {
                "text": texts,
                "id": ids,
                "metadata": [{} for _ in top],
                "score": [float(scores[i]) for i in top],
            },
        }


def _handler(server: ActiveloopServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            if self.path == "/_control" and method == "POST":
                for key, value in (body or {}).items():
                    setattr(server, key, value)
                self._reply(200, {})
                return
            if server.outage:
                with server._lock:
                    server.requests.append((method, self.path, body))
                self.close_connection = True
                self.connection.close()
                return
            status, payload = server.handle(method, self.path, body)
            self._reply(status, payload)

        def _reply(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def do_PUT(self) -> None:
            self._serve("PUT")

    return Handler
