"""One pace for every LLM call of a run: just under what the provider allows (issue 13).

Every call acquires the :class:`Pacer` before it is sent and reports how it ended:

* **From the provider's headers** (OpenAI and compatible proxies): `x-ratelimit-limit-requests`
  and `x-ratelimit-limit-tokens` give the allowance per minute; calls are spaced so that
  requests and tokens stay at `HEADROOM` of it, and `x-ratelimit-remaining-*` at zero holds new
  calls until `x-ratelimit-reset-*`.
* **Without headers** (vLLM, Ollama, llama.cpp): the number of calls in flight adapts from 429s
  alone — additive increase (one more after a full window of successes), multiplicative
  decrease (halved on a 429). `generation_concurrency` is the ceiling, not the pace.
* **The first call goes alone**; the rest follow its reply, paced by what it said.
* **A 429** never fails a run by itself: new calls wait for its `Retry-After` (or a backoff),
  the refused call is sent again, and the run goes on more slowly. Only when the provider has
  refused for longer than `patience_s` (default 10 min) without a single success does the
  call fail, saying so.

The pacer lives on the run's event loop; it is not thread-safe and needs no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

HEADROOM = 0.97  # of the provider's allowance: "just under"
DEFAULT_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
DECREASE_EVERY_S = 1.0  # the calls in flight are halved at most once a second

_DURATION = re.compile(
    r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?"
)


def parse_duration(text: str | None) -> float | None:
    """OpenAI's reset durations ("1s", "6m0s", "20ms", "1h2m3.5s") or plain seconds → seconds."""
    if not text:
        return None
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    m = _DURATION.fullmatch(text)
    if not m or not any(m.groups()):
        return None
    h, mi, s, ms = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The seconds a 429 asks to wait: `retry-after-ms`, else `retry-after` (seconds or a
    duration); None when it says nothing."""
    h = {k.lower(): v for k, v in headers.items()}
    ms = h.get("retry-after-ms")
    if ms is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    return parse_duration(h.get("retry-after"))


def _int(headers: Mapping[str, str], name: str) -> int | None:
    try:
        return int(float(headers[name]))
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True)
class PaceReport:
    requests_per_min: float  # calls started in the last minute
    in_flight_limit: int
    throttled: bool  # a 429 was seen in the last minute, or calls are held


class RateLimited(Exception):
    """The provider refused for longer than the patience: the message says how long."""


class Pacer:
    def __init__(self, ceiling: int, *, patience_s: float = 600.0) -> None:
        self.ceiling = max(1, ceiling)
        self.limit = self.ceiling  # calls in flight allowed now (AIMD without headers)
        self.patience_s = patience_s
        self.in_flight = 0
        self._hold_until = 0.0  # no new call before (Retry-After, a reset)
        self._next_start = 0.0  # spacing from the headers' allowance
        self._rpm: int | None = None
        self._tpm: int | None = None
        self._remaining_requests: int | None = None
        self._remaining_tokens: int | None = None
        self._successes_since_change = 0
        self._refused_since: float | None = None  # first 429 after the last success
        self._last_429 = -1e9
        self._last_decrease = -1e9
        self._backoff = DEFAULT_BACKOFF_S
        self._starts: deque[float] = deque()
        self._changed = asyncio.Event()
        self.requests = 0
        self.refusals = 0
        # The first call goes alone: its reply's headers (if any) say the allowance before a
        # wave of `ceiling` calls could spend a burst and meet 429s.
        self._probing = True

    # -- before a call ---------------------------------------------------------------------------

    async def acquire(self, tokens: int = 0) -> None:
        """Wait until a call of about `tokens` tokens may start."""
        while True:
            now = time.monotonic()
            if self._refused_since is not None and now - self._refused_since > self.patience_s:
                p = self.patience_s
                span = f"{p / 60:.0f} min" if p >= 120 else f"{p:.0f} s"
                raise RateLimited(
                    f"The LLM kept refusing requests (429, rate-limiting) for more than {span} "
                    "without answering one. Check the account's rate limits, or raise "
                    "DMDESK_LLM_RATE_LIMIT_PATIENCE_S, then Proceed."
                )
            wait = max(self._hold_until, self._next_start) - now
            limit = 1 if self._probing else self.limit
            if self.in_flight < limit and wait <= 0:
                break
            self._changed.clear()
            timeout = max(0.01, wait) if wait > 0 else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=timeout)
        self.in_flight += 1
        self.requests += 1
        self._starts.append(now)
        self._next_start = max(now, self._next_start) + self._spacing(tokens)
        if self._remaining_requests is not None:
            self._remaining_requests -= 1
        if self._remaining_tokens is not None:
            self._remaining_tokens -= tokens

    def _spacing(self, tokens: int) -> float:
        gaps = [0.0]
        if self._rpm:
            gaps.append(60.0 / (self._rpm * HEADROOM))
        if self._tpm and tokens:
            gaps.append(60.0 * tokens / (self._tpm * HEADROOM))
        return max(gaps)

    # -- after a call ----------------------------------------------------------------------------

    def succeeded(self, headers: Mapping[str, str] | None = None) -> None:
        self._release()
        self._refused_since = None
        self._backoff = DEFAULT_BACKOFF_S
        self._read_headers(headers or {})
        self._successes_since_change += 1
        if self.limit < self.ceiling and self._successes_since_change >= self.limit:
            self.limit += 1  # additive increase
            self._successes_since_change = 0

    def refused(
        self, retry_after_s: float | None, headers: Mapping[str, str] | None = None
    ) -> None:
        """A 429: hold new calls, halve the calls in flight (once per burst of refusals)."""
        now = time.monotonic()
        self._release()
        self.refusals += 1
        if self._refused_since is None:
            self._refused_since = now
        if now - self._last_decrease > DECREASE_EVERY_S:  # one per burst, not per refused call
            self.limit = max(1, self.limit // 2)
            self._successes_since_change = 0
            self._last_decrease = now
        self._last_429 = now
        self._read_headers(headers or {})
        if retry_after_s is None:
            retry_after_s = self._backoff
            self._backoff = min(MAX_BACKOFF_S, self._backoff * 2)
        self._hold_until = max(self._hold_until, now + retry_after_s)
        self._changed.set()

    def failed(self) -> None:
        """The call ended otherwise (an error the caller handles)."""
        self._release()

    def _release(self) -> None:
        self._probing = False
        self.in_flight = max(0, self.in_flight - 1)
        self._changed.set()

    def _read_headers(self, h: Mapping[str, str]) -> None:
        h = {k.lower(): v for k, v in h.items()}
        rpm, tpm = _int(h, "x-ratelimit-limit-requests"), _int(h, "x-ratelimit-limit-tokens")
        if rpm:
            self._rpm = rpm
        if tpm:
            self._tpm = tpm
        now = time.monotonic()
        for kind in ("requests", "tokens"):
            remaining = _int(h, f"x-ratelimit-remaining-{kind}")
            reset = parse_duration(h.get(f"x-ratelimit-reset-{kind}"))
            if remaining is None:
                continue
            setattr(self, f"_remaining_{kind}", remaining)
            if remaining <= 0 and reset:
                self._hold_until = max(self._hold_until, now + reset)

    # -- reporting -------------------------------------------------------------------------------

    def report(self) -> PaceReport:
        now = time.monotonic()
        while self._starts and now - self._starts[0] > 60.0:
            self._starts.popleft()
        window = min(60.0, max(1.0, now - self._starts[0])) if self._starts else 60.0
        return PaceReport(
            requests_per_min=len(self._starts) * 60.0 / window,
            in_flight_limit=self.limit,
            throttled=now - self._last_429 < 60.0 or self._hold_until > now,
        )
