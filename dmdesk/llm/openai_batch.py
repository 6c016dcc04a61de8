"""OpenAI's Batch API, through the generator's client and its pacer (issue 13).

A batch is a JSONL file of chat requests (`custom_id` = the chunk's id) uploaded with
`files.create(purpose="batch")` and run by `batches.create` within 24 hours at about half the
price. Every call here — upload, create, retrieve, list, cancel, download — acquires the same
:class:`~dmdesk.llm.pacing.Pacer` as the online calls: a 429 slows them down, never fails them.
An answer's reply is validated as an online reply is (:func:`dmdesk.llm.prompt.parse_reply`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import openai

from dmdesk.domain.errors import LLMError
from dmdesk.llm.pacing import Pacer, RateLimited, retry_after
from dmdesk.llm.prompt import SYSTEM, InvalidReply, parse_reply, user_prompt

ENDPOINT: Literal["/v1/chat/completions"] = "/v1/chat/completions"
# The API's limits per batch: 50,000 requests and a 200 MB input file (a margin kept).
MAX_FILE_BYTES = 190 * 1024 * 1024
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})

T = TypeVar("T")


@dataclass(frozen=True)
class Answer:
    """One line of a batch's output or error file."""

    custom_id: str
    questions: list[str] | None  # None: the line failed (`error` says why)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


class BatchClient:
    """The Batch API on an online generator's client and pacer, given as its parts (the client,
    the pacer, the model and how an API error is explained to the admin), so this module and
    dmdesk.llm.openai_generator do not import each other."""

    def __init__(
        self,
        client: Any,
        pacer: Pacer,
        model: str,
        explain: Callable[[openai.APIError], LLMError],
    ) -> None:
        self._client = client
        self.pacer = pacer
        self.model = model
        self._explain = explain

    def request_line(self, custom_id: str, text: str, n: int) -> bytes:
        """One JSONL line: the chat request the online path would send for this chunk."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": user_prompt(text, n)},
            ],
            "temperature": 0.7,
            "response_format": {"type": "json_object"},
        }
        line = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
        return json.dumps(line, ensure_ascii=False).encode() + b"\n"

    async def _paced(self, call: Callable[[], Awaitable[T]]) -> T:
        """One API call under the pacer: a 429 waits and is sent again; another error raises
        LLMError with the generator's explanation."""
        while True:
            try:
                await self.pacer.acquire()
            except RateLimited as exc:
                raise LLMError(str(exc)) from None
            try:
                result = await call()
            except openai.RateLimitError as exc:
                self.pacer.refused(retry_after(exc.response.headers), exc.response.headers)
                continue
            except openai.APIError as exc:
                self.pacer.failed()
                raise self._explain(exc) from None
            except BaseException:
                self.pacer.failed()
                raise
            self.pacer.succeeded()
            return result

    async def upload(self, data: bytes, name: str) -> str:
        f = await self._paced(lambda: self._client.files.create(file=(name, data), purpose="batch"))
        return str(f.id)

    async def create(self, input_file_id: str, metadata: dict[str, str]) -> Any:
        return await self._paced(
            lambda: self._client.batches.create(
                input_file_id=input_file_id,
                endpoint=ENDPOINT,
                completion_window="24h",
                metadata=metadata,
            )
        )

    async def retrieve(self, batch_id: str) -> Any:
        return await self._paced(lambda: self._client.batches.retrieve(batch_id))

    async def cancel(self, batch_id: str) -> Any:
        return await self._paced(lambda: self._client.batches.cancel(batch_id))

    async def find_by_input(self, input_file_id: str) -> Any | None:
        """The batch made from this input file, if one was created (a process killed between
        `batches.create` and recording its id must not create it again)."""

        async def scan() -> Any | None:
            async for batch in self._client.batches.list(limit=100):
                if batch.input_file_id == input_file_id:
                    return batch
            return None

        return await self._paced(scan)

    async def content(self, file_id: str) -> str:
        resp = await self._paced(lambda: self._client.files.content(file_id))
        return str(resp.text)

    def parse(self, text: str, n: int) -> list[Answer]:
        """The lines of an output or error file."""
        answers = []
        for raw in text.splitlines():
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
                cid = str(line["custom_id"])
            except (ValueError, KeyError, TypeError):
                continue  # not a line of ours: nothing to attribute it to
            answers.append(_answer(cid, line, n))
        return answers


def _answer(cid: str, line: dict[str, Any], n: int) -> Answer:
    error = line.get("error")
    response = line.get("response") or {}
    if error or response.get("status_code") != 200:
        what = (error or {}).get("message") or f"HTTP {response.get('status_code')}"
        return Answer(cid, None, error=str(what))
    body = response.get("body") or {}
    usage = body.get("usage") or {}
    tokens = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    try:
        content = body["choices"][0]["message"]["content"]
        return Answer(cid, parse_reply(content, n), *tokens)
    except (KeyError, IndexError, TypeError):
        return Answer(cid, None, *tokens, error="a reply without a message")
    except InvalidReply as exc:
        return Answer(cid, None, *tokens, error=str(exc))
