"""A small OpenAI-compatible chat server on 127.0.0.1, for tests and benchmarks.

It answers `POST /v1/chat/completions` with `{"questions": [...]}` built from the passage,
`POST /v1/embeddings` with deterministic hashed bag-of-words vectors, and has knobs for the
faults real LLMs show:

* `latency_s` — every reply waits this long (a real LLM call is ~0.5 s);
* `fail_after` — after this many successful completions, calls fail (`fail_times` of them, or
  all while it is None) in `fail_mode`: `status` (HTTP `fail_status`, with `Retry-After` when
  `retry_after` is set), `malformed` (not JSON), `empty` (empty content), `no_questions`
  (JSON without a usable question), `drop` (connection closed without a reply), `hang` (no reply
  for `hang_s`);
* `questions_per_reply` — force the number of questions returned (the "wrong count" fault);
* `rpm_limit` / `tpm_limit` — an account's allowance per minute (requests / tokens), as
  OpenAI's token buckets: a call past it gets 429 with `Retry-After`, and every reply carries
  the real `x-ratelimit-limit/remaining/reset-requests|tokens` headers (`rate_headers=False`:
  429s only, as vLLM, Ollama or llama.cpp behind a proxy); replies carry token `usage`
  (prompt: characters / 4; completion: the reply's characters / 4);
* `embeddings_status` — answer `/v1/embeddings` with this HTTP error;
* the **Batch API**: `POST /v1/files` (multipart, purpose "batch"), `GET /v1/files/{id}/content`,
  `POST /v1/batches`, `GET /v1/batches[/{id}]`, `POST /v1/batches/{id}/cancel`. A batch is
  answered `batch_delay_s` after it is created (its request counts grow meanwhile); a
  `batch_fail_fraction` of its lines fail the first time their `custom_id` is seen (they go to
  the error file); a cancelled batch keeps the answers it had, in its output file.

Knobs can be changed from another process with `POST /_control` (JSON of knobs); `GET /_stats`
returns the counters. Every request's passage is recorded (`passages`), so a test can prove which
chunks were (not) asked for.

Made for speed as well as faults (DESIGN.md "Known facts"): `disable_nagle_algorithm` on the
handler (else each keep-alive reply waits ~40 ms for a delayed ACK) and a deep accept queue
(bursts of concurrent connects are otherwise reset).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PASSAGE = re.compile(r"<passage>\n(.*)\n</passage>", re.S)
_COUNT = re.compile(r"Write (\d+) question")


@dataclass
class Knobs:
    latency_s: float = 0.0
    fail_after: int | None = None
    fail_times: int | None = None
    fail_mode: str = "status"
    fail_status: int = 500
    retry_after: float | None = None
    hang_s: float = 30.0
    questions_per_reply: int | None = None
    embeddings_status: int | None = None  # answer /v1/embeddings with this HTTP error
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    rate_headers: bool = True
    # Bucket capacity as a fraction of the minute's allowance (OpenAI's: 1.0, a full minute);
    # a small one makes a short test meet the limit.
    rate_burst: float = 1.0
    batch_delay_s: float = 0.0
    batch_fail_fraction: float = 0.0


@dataclass
class Stats:
    requests: int = 0
    successes: int = 0
    failures: int = 0
    passages: list[str] = field(default_factory=list)
    last_prompt: str = ""  # the last chat completion's messages, joined
    first_request_at: float | None = None  # time.time() of the first completion request
    rate_limited: int = 0  # 429s sent by the rpm/tpm limits
    prompt_tokens: int = 0  # the `usage` of every answered completion, summed
    completion_tokens: int = 0
    ok_passages: list[str] = field(default_factory=list)
    embedding_requests: int = 0
    files_uploaded: int = 0
    batches_created: int = 0
    batches_cancelled: int = 0
    batch_lines_answered: int = 0
    batch_custom_ids: list[str] = field(default_factory=list)  # every line answered, in order


EMBED_DIM = 64


def _word_vector(word: str) -> list[float]:
    rnd = random.Random(int(hashlib.md5(word.encode()).hexdigest(), 16))
    return [rnd.gauss(0.0, 1.0) for _ in range(EMBED_DIM)]


def embedding_for(text: str) -> list[float]:
    """A deterministic bag-of-words embedding: the sum of a fixed Gaussian vector per word,
    normalised. Texts sharing words are near each other and scores do not tie — enough for
    retrieval tests without a model."""
    vec = [0.0] * EMBED_DIM
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        for i, v in enumerate(_word_vector(word)):
            vec[i] += v
    norm = sum(v * v for v in vec) ** 0.5 or 1.0
    return [v / norm for v in vec]


def questions_for(passage: str, n: int) -> list[str]:
    """Deterministic, distinct questions for a passage (tests can recompute them)."""
    digest = hashlib.sha1(passage.encode()).hexdigest()[:8]
    head = " ".join(passage.split()[:6])
    return [f"Which passage {digest} explains {head} (aspect {k + 1})?" for k in range(n)]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that cancels an in-flight call hangs up on us: normal, not worth a traceback.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeLLMServer:
    def __init__(self, **knobs: Any) -> None:
        self.knobs = Knobs(**knobs)
        self.stats = Stats()
        self._lock = threading.Lock()
        self._failed_in_window = 0
        self._buckets: dict[str, tuple[float, float]] = {}  # kind → (level, monotonic time)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._files: dict[str, bytes] = {}
        self._batches: dict[str, dict[str, Any]] = {}
        self._failed_ids: set[str] = set()  # batch lines failed once (they succeed when retried)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, port: int = 0) -> FakeLLMServer:
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = _Server(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeLLMServer:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- knobs ---------------------------------------------------------------------------------

    def configure(self, **knobs: Any) -> None:
        with self._lock:
            for k, v in knobs.items():
                if not hasattr(self.knobs, k):
                    raise KeyError(k)
                setattr(self.knobs, k, v)
            self._failed_in_window = 0

    def reset_stats(self) -> None:
        with self._lock:
            self.stats = Stats()

    # -- the account's allowance ---------------------------------------------------------------

    def _bucket(self, kind: str, limit: int, now: float) -> float:
        capacity = max(1.0, limit * self.knobs.rate_burst)
        level, at = self._buckets.get(kind, (capacity, now))
        return min(capacity, level + (now - at) * limit / 60.0)

    def _admit(self, tokens: int) -> tuple[float | None, dict[str, str]]:
        """Take one request and `tokens` tokens from the buckets: (None, headers) when the call
        may go on, else (seconds to wait, headers) for a 429."""
        with self._lock:
            k = self.knobs
            now = time.monotonic()
            wait = 0.0
            headers: dict[str, str] = {}
            levels = {}
            for kind, limit, need in (
                ("requests", k.rpm_limit, 1),
                ("tokens", k.tpm_limit, tokens),
            ):
                if not limit:
                    continue
                level = self._bucket(kind, limit, now)
                levels[kind] = (level, limit, need)
                if level < need:
                    wait = max(wait, (need - level) * 60.0 / limit)
            ok = wait == 0.0
            for kind, (level, limit, need) in levels.items():
                if ok:
                    level -= need
                self._buckets[kind] = (level, now)
                if k.rate_headers:
                    headers[f"x-ratelimit-limit-{kind}"] = str(limit)
                    headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, int(level)))
                    capacity = max(1.0, limit * k.rate_burst)
                    reset = (capacity - level) * 60.0 / limit
                    headers[f"x-ratelimit-reset-{kind}"] = f"{reset:.3f}s"
            if not ok:
                self.stats.rate_limited += 1
                headers["retry-after"] = f"{wait:.3f}"
                return wait, headers
            return None, headers

    def _charge_tokens(self, tokens: int) -> None:
        """Take a reply's completion tokens from the token bucket (it may go below zero: the
        next requests wait until it has refilled)."""
        with self._lock:
            limit = self.knobs.tpm_limit
            if limit and tokens:
                now = time.monotonic()
                self._buckets["tokens"] = (self._bucket("tokens", limit, now) - tokens, now)

    # -- decisions -----------------------------------------------------------------------------

    def _decide(self, passage: str) -> tuple[str | None, Knobs]:
        """Return the fault to play for this call (None = answer) and a snapshot of the knobs."""
        with self._lock:
            k = Knobs(**asdict(self.knobs))
            self.stats.requests += 1
            if self.stats.first_request_at is None:
                self.stats.first_request_at = time.time()
            self.stats.passages.append(passage)
            fault = None
            if (
                k.fail_after is not None
                and self.stats.successes >= k.fail_after
                and (k.fail_times is None or self._failed_in_window < k.fail_times)
            ):
                fault = k.fail_mode
                self._failed_in_window += 1
                self.stats.failures += 1
            return fault, k

    def _record_success(self, passage: str) -> bool:
        with self._lock:
            k = self.knobs
            # A call that started before the limit but ends after it still counts as a success
            # only while the limit allows it, so "fail after N" means at most N answers.
            if (
                k.fail_after is not None
                and self.stats.successes >= k.fail_after
                and (k.fail_times is None or self._failed_in_window < k.fail_times)
            ):
                self._failed_in_window += 1
                self.stats.failures += 1
                return False
            self.stats.successes += 1
            self.stats.ok_passages.append(passage)
            return True

    # -- the Batch API -------------------------------------------------------------------------

    def add_file(self, data: bytes, purpose: str, filename: str = "input.jsonl") -> dict[str, Any]:
        with self._lock:
            fid = f"file-{len(self._files) + 1:06d}"
            self._files[fid] = data
            if purpose == "batch":
                self.stats.files_uploaded += 1
        return {
            "id": fid,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }

    def file_content(self, fid: str) -> bytes | None:
        with self._lock:
            return self._files.get(fid)

    def create_batch(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            data = self._files.get(str(body.get("input_file_id")))
            if data is None:
                return 400, {"error": {"message": "input_file_id not found"}}
            lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
            bid = f"batch_{len(self._batches) + 1:06d}"
            self._batches[bid] = {
                "id": bid,
                "input_file_id": body["input_file_id"],
                "endpoint": body.get("endpoint"),
                "completion_window": body.get("completion_window", "24h"),
                "metadata": body.get("metadata"),
                "created_at": int(time.time()),
                "t0": time.monotonic(),
                "created_wall": time.time(),
                "delay": self.knobs.batch_delay_s,
                "lines": lines,
                "status": "in_progress",
                "output_file_id": None,
                "error_file_id": None,
                "answered": 0,
                "failed": 0,
            }
            self.stats.batches_created += 1
            return 200, self._batch_view(self._batches[bid])

    def batch(self, bid: str, cancel: bool = False) -> dict[str, Any] | None:
        with self._lock:
            b = self._batches.get(bid)
            if b is None:
                return None
            if cancel and b["status"] == "in_progress":
                self._finish(b, self._due(b), "cancelled")
                self.stats.batches_cancelled += 1
            return self._batch_view(b)

    def list_batches(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._batch_view(b) for b in reversed(self._batches.values())]

    def _due(self, b: dict[str, Any]) -> int:
        """How many of the batch's lines are answered by now."""
        n = len(b["lines"])
        if b["delay"] <= 0:
            return n
        return min(n, int(n * (time.monotonic() - b["t0"]) / b["delay"]))

    def _batch_view(self, b: dict[str, Any]) -> dict[str, Any]:
        if b["status"] == "in_progress" and self._due(b) >= len(b["lines"]):
            self._finish(b, len(b["lines"]), "completed")
        if b["status"] == "in_progress":
            done = self._due(b)
            counts = {"total": len(b["lines"]), "completed": done, "failed": 0}
        else:
            counts = {
                "total": len(b["lines"]),
                "completed": b["answered"],
                "failed": b["failed"],
            }
        # Not OpenAI's: when the last line is (or was) answered, for benchmarks to measure from.
        b["dmdesk_due_at"] = b["created_wall"] + b["delay"]
        view = {
            k: v
            for k, v in b.items()
            if k not in ("t0", "delay", "lines", "answered", "created_wall")
        }
        view.pop("failed")
        return view | {"object": "batch", "request_counts": counts, "errors": None}

    def _finish(self, b: dict[str, Any], upto: int, status: str) -> None:
        out, err = [], []
        for line in b["lines"][:upto]:
            cid = str(line.get("custom_id"))
            rnd = random.Random(cid).random()
            if cid not in self._failed_ids and rnd < self.knobs.batch_fail_fraction:
                self._failed_ids.add(cid)
                err.append(
                    {
                        "id": f"batch_req_{cid}",
                        "custom_id": cid,
                        "response": None,
                        "error": {"code": "server_error", "message": "injected batch failure"},
                    }
                )
                continue
            body = line.get("body") or {}
            prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
            m = _PASSAGE.search(prompt)
            passage = m.group(1) if m else prompt
            c = _COUNT.search(prompt)
            content = json.dumps({"questions": questions_for(passage, int(c.group(1)) if c else 1)})
            reply = _completion(body.get("model", "test-model"), content)
            usage = (max(1, len(prompt) // 4), max(1, len(content) // 4))
            reply["usage"] = {
                "prompt_tokens": usage[0],
                "completion_tokens": usage[1],
                "total_tokens": sum(usage),
            }
            self.stats.prompt_tokens += usage[0]
            self.stats.completion_tokens += usage[1]
            self.stats.batch_lines_answered += 1
            self.stats.batch_custom_ids.append(cid)
            out.append(
                {
                    "id": f"batch_req_{cid}",
                    "custom_id": cid,
                    "response": {"status_code": 200, "request_id": "req", "body": reply},
                    "error": None,
                }
            )
        for key, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                fid = f"file-{len(self._files) + 1:06d}"
                self._files[fid] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                b[key] = fid
        b["answered"], b["failed"], b["status"] = len(out), len(err), status


class _Handler(BaseHTTPRequestHandler):
    owner: FakeLLMServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(
        self, status: int, body: dict[str, Any] | str, headers: dict[str, str] | None = None
    ) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw or b"{}")

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/_stats"):
            s = self.owner.stats
            self._send(
                200,
                {
                    "requests": s.requests,
                    "successes": s.successes,
                    "failures": s.failures,
                    "first_request_at": s.first_request_at,
                    "rate_limited": s.rate_limited,
                    "prompt_tokens": s.prompt_tokens,
                    "completion_tokens": s.completion_tokens,
                    "files_uploaded": s.files_uploaded,
                    "batches_created": s.batches_created,
                    "batches_cancelled": s.batches_cancelled,
                    "batch_lines_answered": s.batch_lines_answered,
                    "batch_custom_ids": s.batch_custom_ids,
                },
            )
        elif self._batch_get():
            return
        elif self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": "test-model", "object": "model"}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def _batch_get(self) -> bool:
        path = self.path.split("?")[0].rstrip("/")
        m = re.search(r"/files/([^/]+)/content$", path)
        if m:
            data = self.owner.file_content(m.group(1))
            if data is None:
                self._send(404, {"error": {"message": "no such file"}})
            else:
                self._send(200, data.decode())
            return True
        m = re.search(r"/batches/([^/]+)$", path)
        if m:
            view = self.owner.batch(m.group(1))
            self._send(*((200, view) if view else (404, {"error": {"message": "no batch"}})))
            return True
        if path.endswith("/batches"):
            listed = self.owner.list_batches()
            self._send(200, {"object": "list", "data": listed, "has_more": False})
            return True
        return False

    def _upload(self) -> None:
        from email import policy
        from email.parser import BytesParser

        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        head = f"Content-Type: {self.headers.get('Content-Type')}\r\n\r\n".encode()
        form = BytesParser(policy=policy.default).parsebytes(head + raw)
        fields: dict[str, Any] = {}
        name = "input.jsonl"
        for part in form.iter_parts():
            key = part.get_param("name", header="content-disposition")
            fields[str(key)] = part.get_payload(decode=True)
            name = str(part.get_filename() or name) if key == "file" else name
        if "file" not in fields:
            self._send(400, {"error": {"message": "no file"}})
            return
        purpose = (fields.get("purpose") or b"").decode()
        self._send(200, self.owner.add_file(fields["file"], purpose, name))

    def do_POST(self) -> None:
        if self.path.rstrip("/").endswith("/files"):
            self._upload()
            return
        try:
            body = self._read_json()
        except (ValueError, OSError):
            self._send(400, {"error": {"message": "bad json"}})
            return
        if self.path.rstrip("/").endswith("/_reset"):
            self.owner.reset_stats()
            self._send(200, {})
            return
        if self.path.rstrip("/").endswith("/_control"):
            try:
                self.owner.configure(**body.pop("knobs", body))
            except (KeyError, TypeError) as exc:
                self._send(400, {"error": {"message": f"unknown knob {exc}"}})
                return
            self._send(200, asdict(self.owner.knobs))
            return
        if self.path.rstrip("/").endswith("/embeddings"):
            if self.owner.knobs.embeddings_status:
                status = self.owner.knobs.embeddings_status
                self._send(status, {"error": {"message": f"embeddings down ({status})"}})
                return
            items = body.get("input", [])
            items = [items] if isinstance(items, str) else items
            with self.owner._lock:
                self.owner.stats.embedding_requests += 1
            data = [
                {"object": "embedding", "index": i, "embedding": embedding_for(str(t))}
                for i, t in enumerate(items)
            ]
            self._send(
                200,
                {
                    "object": "list",
                    "data": data,
                    "model": body.get("model"),
                    "usage": {"prompt_tokens": 1, "total_tokens": 1},
                },
            )
            return
        m = re.search(r"/batches/([^/]+)/cancel$", self.path.rstrip("/"))
        if m:
            view = self.owner.batch(m.group(1), cancel=True)
            self._send(*((200, view) if view else (404, {"error": {"message": "no batch"}})))
            return
        if self.path.rstrip("/").endswith("/batches"):
            self._send(*self.owner.create_batch(body))
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": "not found"}})
            return
        prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        self.owner.stats.last_prompt = prompt
        m = _PASSAGE.search(prompt)
        passage = m.group(1) if m else prompt
        c = _COUNT.search(prompt)
        n = int(c.group(1)) if c else 1
        prompt_tokens = max(1, len(prompt) // 4)
        # As OpenAI counts a request against the tokens-per-minute limit: its prompt and its
        # max_tokens when given, at admission; the completion it gets is charged when answered.
        reserved = int(body.get("max_tokens") or body.get("max_completion_tokens") or 0)
        refused, rate_headers = self.owner._admit(prompt_tokens + reserved)
        if refused is not None:
            msg = {"error": {"message": "Rate limit reached", "type": "rate_limit_exceeded"}}
            self._send(429, msg, rate_headers)
            return
        fault, k = self.owner._decide(passage)
        if k.latency_s:
            time.sleep(k.latency_s)
        if fault is None and not self.owner._record_success(passage):
            fault = k.fail_mode
        if fault is not None:
            self._fault(fault, k, body)
            return
        count = k.questions_per_reply if k.questions_per_reply is not None else n
        content = json.dumps({"questions": questions_for(passage, count)})
        completion_tokens = max(1, len(content) // 4)
        self.owner._charge_tokens(max(0, completion_tokens - reserved))
        with self.owner._lock:
            self.owner.stats.prompt_tokens += prompt_tokens
            self.owner.stats.completion_tokens += completion_tokens
        reply = _completion(body.get("model", "test-model"), content)
        reply["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        self._send(200, reply, rate_headers)

    def _fault(self, mode: str, k: Knobs, body: dict[str, Any]) -> None:
        model = body.get("model", "test-model")
        if mode == "status":
            headers = {"Retry-After": str(k.retry_after)} if k.retry_after is not None else None
            msg = {"error": {"message": f"injected {k.fail_status}", "type": "test_fault"}}
            self._send(k.fail_status, msg, headers)
        elif mode == "malformed":
            self._send(200, _completion(model, "this is {not json"))
        elif mode == "empty":
            self._send(200, _completion(model, ""))
        elif mode == "no_questions":
            self._send(200, _completion(model, json.dumps({"questions": []})))
        elif mode == "drop":
            self.close_connection = True
            self.connection.close()
        elif mode == "hang":
            time.sleep(k.hang_s)
            self.close_connection = True
        else:
            self._send(500, {"error": {"message": f"unknown fault {mode}"}})


def _completion(model: str, content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="dmdesk's OpenAI-compatible test server")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--fail-after", type=int, default=None)
    p.add_argument("--fail-status", type=int, default=500)
    args = p.parse_args(argv)
    srv = FakeLLMServer(
        latency_s=args.latency, fail_after=args.fail_after, fail_status=args.fail_status
    ).start(args.port)
    print(srv.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
