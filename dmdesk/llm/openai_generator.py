"""Questions from any OpenAI-compatible chat server, through the openai SDK's AsyncOpenAI.

Every call goes through the run's :class:`~dmdesk.llm.pacing.Pacer`: it starts only when the
provider's allowance (its `x-ratelimit-*` headers, or the 429s it sends) leaves room, and a 429
is handed to the pacer — the run slows down and the call is sent again — instead of being
retried blindly by the SDK and failing the run once its retries run out. Other transient
failures (408, 409, 5xx, connection errors, timeouts) are retried by the SDK itself
(`max_retries`, exponential backoff with jitter, 0.5 s → 8 s). Each reply's token `usage` is
counted (`prompt_tokens`, `completion_tokens`).
An unusable reply (not JSON, no questions) is asked again up to `INVALID_REPLY_ATTEMPTS` times.
What is left raises LLMError with a message that names the cause and the next step; it never
includes the key.
"""

from __future__ import annotations

from typing import Any

import openai

from dmdesk.domain.errors import LLMError
from dmdesk.llm.openai_batch import BatchClient
from dmdesk.llm.pacing import Pacer, RateLimited, retry_after
from dmdesk.llm.prompt import SYSTEM, InvalidReply, parse_reply, user_prompt

INVALID_REPLY_ATTEMPTS = 3
# Keyless local servers (llama.cpp, vLLM, LM Studio, our test server) accept any key; the SDK
# refuses to start without one.
PLACEHOLDER_KEY = "sk-no-key-configured"


class _PacedClient(openai.AsyncOpenAI):
    """The SDK's client, except that a 429 is not retried by the SDK: the pacer handles it."""

    def _should_retry(self, response: Any) -> bool:
        if getattr(response, "status_code", None) == 429:
            return False
        return bool(super()._should_retry(response))


def estimate_tokens(text: str) -> int:
    """About 4 characters a token (OpenAI's rule of thumb for English)."""
    return max(1, len(text) // 4)


class OpenAIGenerator:
    def __init__(
        self,
        *,
        model: str,
        base_url: str | None,
        api_key: str | None,
        max_retries: int = 4,
        timeout_s: float = 60.0,
        concurrency: int = 8,
        rate_limit_patience_s: float = 600.0,
    ) -> None:
        if not api_key and not base_url:
            raise LLMError(
                "No OpenAI API key is configured: set OPENAI_API_KEY, save a key in the Settings "
                "card, or point DMDESK_LLM_BASE_URL at an OpenAI-compatible server.",
            )
        self.model = model
        self.base_url = base_url
        self.description = f"{model} at {base_url or 'api.openai.com'}"
        self._max_retries = max_retries
        # One kept-alive connection per concurrent call (the SDK keeps 100 by default; above
        # that, connections would be closed and re-opened on every call).
        from openai._constants import DEFAULT_CONNECTION_LIMITS

        limits = type(DEFAULT_CONNECTION_LIMITS)(
            max_connections=max(1000, concurrency),
            max_keepalive_connections=max(100, concurrency),
            keepalive_expiry=DEFAULT_CONNECTION_LIMITS.keepalive_expiry,
        )
        self.pacer = Pacer(concurrency, patience_s=rate_limit_patience_s)
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._answered = 0  # replies that reported their usage
        self._client = _PacedClient(
            api_key=api_key or PLACEHOLDER_KEY,
            base_url=base_url,
            max_retries=max_retries,
            timeout=timeout_s,
            http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout_s),
        )
        self._json_mode = True

    @property
    def batches(self) -> Any:
        """The Batch API on this generator's client and pacer (dmdesk.llm.openai_batch)."""
        return BatchClient(self._client, self.pacer, self.model, self._explain)

    async def generate(self, text: str, n: int) -> list[str]:
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": user_prompt(text, n)},
        ]
        last: InvalidReply | None = None
        for _ in range(INVALID_REPLY_ATTEMPTS):
            content = await self._complete(messages)
            try:
                return parse_reply(content, n)
            except InvalidReply as exc:
                last = exc
        raise LLMError(
            f"The LLM ({self.model}) gave no usable questions after {INVALID_REPLY_ATTEMPTS} "
            f"tries: {last}. Check that the model follows JSON instructions, or pick another "
            "model, then Proceed."
        )

    async def _complete(self, messages: list[dict[str, str]]) -> str | None:
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": 0.7}
        if self._json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        # Against a tokens-per-minute limit a call counts its prompt and its completion: the
        # completion as this run's replies have averaged so far (80 before the first).
        answered = self._answered
        completion = self.completion_tokens // answered if answered else 80
        tokens = sum(estimate_tokens(m["content"]) for m in messages) + completion
        while True:
            try:
                await self.pacer.acquire(tokens)
            except RateLimited as exc:
                raise LLMError(str(exc)) from None
            try:
                raw = await self._client.chat.completions.with_raw_response.create(**kwargs)
                resp = raw.parse()
            except openai.RateLimitError as exc:
                headers = exc.response.headers
                self.pacer.refused(retry_after(headers), headers)
                continue  # sent again once the pacer allows: a 429 alone never fails a run
            except openai.BadRequestError as exc:
                self.pacer.failed()
                if self._json_mode and "response_format" in str(exc.message):
                    self._json_mode = False  # a server without JSON mode: rely on the prompt
                    return await self._complete(messages)
                raise self._explain(exc) from None
            except openai.APIError as exc:
                self.pacer.failed()
                raise self._explain(exc) from None
            except BaseException:  # cancelled: the call is not in flight any more
                self.pacer.failed()
                raise
            self.pacer.succeeded(raw.headers)
            if resp.usage is not None:
                self.prompt_tokens += resp.usage.prompt_tokens or 0
                self.completion_tokens += resp.usage.completion_tokens or 0
                self._answered += 1
            if not resp.choices:
                return None
            content: str | None = resp.choices[0].message.content
            return content

    def _explain(self, exc: openai.APIError) -> LLMError:
        where = self.base_url or "api.openai.com"
        tries = f"after {self._max_retries} retries" if self._max_retries else "(no retries set)"
        if isinstance(exc, openai.AuthenticationError):
            return LLMError(
                f"The LLM refused the API key (401) at {where}. Set OPENAI_API_KEY or save a "
                "valid key in the Settings card, then Proceed.",
            )
        if isinstance(exc, openai.PermissionDeniedError):
            return LLMError(
                f"The LLM denied access (403) to model {self.model} at {where}. Check the key's "
                "permissions or pick another model, then Proceed.",
            )
        if isinstance(exc, openai.NotFoundError):
            return LLMError(
                f"The LLM at {where} does not know model {self.model} (404). Check the model name "
                "and DMDESK_LLM_BASE_URL, then Proceed.",
            )
        if isinstance(exc, openai.APITimeoutError):
            return LLMError(
                f"The LLM at {where} did not answer in time {tries}. Check the server or raise "
                "DMDESK_LLM_TIMEOUT_S, then Proceed."
            )
        if isinstance(exc, openai.APIConnectionError):
            return LLMError(
                f"Could not reach the LLM at {where} {tries}. Check the network and "
                "DMDESK_LLM_BASE_URL, then Proceed."
            )
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            if status >= 500:
                return LLMError(
                    f"The LLM server at {where} kept failing ({status}) {tries}. Try again later "
                    "with Proceed."
                )
            return LLMError(
                f"The LLM at {where} rejected the request ({status}). Check the model and "
                "settings, then Proceed.",
            )
        return LLMError(f"The LLM call failed ({type(exc).__name__}). Proceed to retry.")

    async def aclose(self) -> None:
        await self._client.close()
