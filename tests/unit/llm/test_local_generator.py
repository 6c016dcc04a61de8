"""Parsing the local model's numbered completions (its real habits, seen on SmolLM2-135M)."""

from __future__ import annotations

import pytest

from dmdesk.llm.local_generator import parse_numbered


@pytest.mark.parametrize(
    ("reply", "n", "expected"),
    [
        ('1. What does it mean by "the Exception".', 1, ['What does it mean by "the Exception"?']),
        (
            "1. What are names? 2. How do they work in Python's syntax? 3. Why?",
            2,
            ["What are names?", "How do they work in Python's syntax?"],
        ),
        (
            "1.  What type of behavior can you expect.\n\n2. How do I use `type()` on lists?",
            2,
            ["What type of behavior can you expect?", "How do I use `type()` on lists?"],
        ),
        ("1. The passage explains loops.\n2. It is about for.", 1, []),
        ("1. What is X? Well, X is a thing.\n2. What is X?", 3, ["What is X?"]),
    ],
)
def test_parse_numbered(reply: str, n: int, expected: list[str]) -> None:
    assert parse_numbered(reply, n) == expected
