"""The prompt and the validation of replies, shared by every generator."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

MAX_PASSAGE_CHARS = 6_000
MIN_QUESTION_CHARS = 8
MAX_QUESTION_CHARS = 300

SYSTEM = (
    "You write search queries for a retrieval training set. Given a passage from a knowledge "
    "base, write what a user of that knowledge base would type into its search box when this "
    "passage is the answer they need. Vary the wording as users do, in turn: a natural "
    "question, a how-do-I question ('How do I …?', 'How can I …?') and a short keyword query "
    "(two to six words, no '?'). Each one is self-contained, names the specific subject (a "
    "command, function, setting, concept) instead of saying 'this passage', 'the text', 'the "
    "following' or 'it', and could not be answered just as well by most other passages. "
    'Reply with JSON only: {"questions": ["...", ...]}.'
)

# The styles, in the order the prompt asks for them (issue 25): users ask new questions about
# the chunks Deep Memory trained on, in all three ways, so training on one way only teaches it
# one way of asking.
STYLES = ("natural question", "how-do-I question", "keyword query")

# A question about "the text" / "this passage" / "the following" instead of its subject: useless
# to a user of the knowledge base (the local generator drops it, the quality filters flag it).
REFERS_TO_PASSAGE = re.compile(
    r"\b(the|this|that|above|following|given|provided) (text|passage|paragraph|excerpt|"
    r"section|chunk|document|snippet|article)\b|\bthe following\b",
    re.I,
)

PASSAGE_OPEN = "<passage>"
PASSAGE_CLOSE = "</passage>"


def user_prompt(text: str, n: int) -> str:
    passage = text[:MAX_PASSAGE_CHARS]
    plural = "question" if n == 1 else "questions"
    styles = ", ".join(STYLES[i % len(STYLES)] for i in range(n))
    return (
        f"Write {n} {plural} answered by this passage ({styles}).\n"
        f"{PASSAGE_OPEN}\n{passage}\n{PASSAGE_CLOSE}"
    )


class InvalidReply(ValueError):
    """The reply is not usable; the message says why (it is shown to the admin if it persists)."""


_SPACE = re.compile(r"\s+")


def clean_questions(candidates: Sequence[object], n: int) -> list[str]:
    """Normalise, bound and deduplicate; keep at most `n`. Fewer than `n` is accepted (a model
    that finds only one good question is better kept than retried forever); none is invalid."""
    seen: set[str] = set()
    out: list[str] = []
    for item in candidates:
        if not isinstance(item, str):
            continue
        q = _SPACE.sub(" ", item).strip().strip("\"'").strip()
        q = re.sub(r"^(\d+[.)]|[-*•])\s*", "", q)
        if not (MIN_QUESTION_CHARS <= len(q) <= MAX_QUESTION_CHARS):
            continue
        key = q.casefold().rstrip("?").strip()
        if key in seen:
            continue
        seen.add(key)
        out.append(q)
        if len(out) == n:
            break
    return out


def parse_reply(content: str | None, n: int) -> list[str]:
    if not content or not content.strip():
        raise InvalidReply("the LLM returned an empty reply")
    body = content.strip()
    if body.startswith("```"):  # some servers fence JSON even in JSON mode
        body = body.strip("`")
        body = body[body.find("{") :] if "{" in body else body
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        raise InvalidReply("the LLM reply is not JSON") from None
    if isinstance(data, dict):
        items = data.get("questions")
    elif isinstance(data, list):
        items = data
    else:
        items = None
    if not isinstance(items, list):
        raise InvalidReply('the LLM reply has no "questions" list')
    questions = clean_questions(items, n)
    if not questions:
        raise InvalidReply("the LLM reply holds no usable question")
    return questions
