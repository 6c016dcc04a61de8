"""Parsing the local model's numbered completions (its real habits, seen on SmolLM2-135M), and
the rules that keep only whole, specific questions."""

from __future__ import annotations

import pytest

from dmdesk.llm.local_generator import (
    is_generic,
    parse_numbered,
    subject_question,
    tidy,
)


@pytest.mark.parametrize(
    ("reply", "n", "expected"),
    [
        # the habits: a "." instead of "?", several per line, a statement, a repeat
        ('1. What is meant by "the Exception".', 1, ['What is meant by "the Exception"?']),
        (
            "1. What are names? 2. How are names bound in Python's syntax? 3. Why?",
            2,
            ["What are names?", "How are names bound in Python's syntax?"],
        ),
        (
            "1.  What type of behavior can you expect.\n\n2. How do I use `type()` on lists?",
            2,
            ["What type of behavior can you expect?", "How do I use `type()` on lists?"],
        ),
        ("1. The passage explains loops.\n2. It is about for.", 1, []),
        ("1. What is X? Well, X is a thing.\n2. What is X?", 3, ["What is X?"]),
        # generic templates are dropped
        ("1. What does it do? 2. What is an example? 3. What does the function do?", 3, []),
        (
            '1. what happens to "assert" when -O is given?',
            1,
            ['What happens to "assert" when -O is given?'],
        ),
    ],
)
def test_parse_numbered(reply: str, n: int, expected: list[str]) -> None:
    assert parse_numbered(reply, n) == expected


def test_the_lead_word_is_kept_and_the_question_is_whole() -> None:
    """The bug of issue 10: "1. What" + " does …" was rebuilt without "What"."""
    assert parse_numbered("1. What" + " does the assert statement check?", 1) == [
        "What does the assert statement check?"
    ]


def test_a_question_must_name_something_of_its_passage() -> None:
    passage = 'The "assert" statement inserts debugging assertions into a program.'
    assert parse_numbered("1. Why isn't there more help somewhere else?", 1, passage) == []
    assert parse_numbered("1. When are debugging assertions removed?", 1, passage) == [
        "When are debugging assertions removed?"
    ]


@pytest.mark.parametrize(
    "question",
    [
        "What does it do?",
        "What is this?",
        "How does it work?",
        "What is an example?",
        "What does the following code do?",
        "What is the purpose of this passage?",
        "Which section of the text covers loops?",
    ],
)
def test_known_generic_templates(question: str) -> None:
    assert is_generic(question)


def test_tidy_keeps_only_questions() -> None:
    assert tidy("  is the GIL released during I/O.") == "Is the GIL released during I/O?"
    assert tidy("The GIL is released.") is None


@pytest.mark.parametrize(
    ("text", "question"),
    [
        (
            'The "assert" statement\n*****\n\nAssert statements are…',
            'What is The "assert" statement?',
        ),
        ("Assignment statements\n****\n\nThey bind names.", "What are Assignment statements?"),
        ('If the name occurs in a "global" statement, it is bound.', 'What does "global" do?'),
    ],
)
def test_the_fallback_question_names_the_chunks_subject(text: str, question: str) -> None:
    assert subject_question(text) == question
