"""Reply validation: JSON questions, cleaned, bounded, deduplicated."""

from __future__ import annotations

import json

import pytest

from dmdesk.llm.prompt import InvalidReply, parse_reply, user_prompt


def test_prompt_carries_the_passage_and_the_count() -> None:
    p = user_prompt("Some passage.", 3)
    assert "Write 3 questions" in p and "<passage>\nSome passage.\n</passage>" in p


def test_questions_are_cleaned_deduplicated_and_capped() -> None:
    content = json.dumps(
        {"questions": ["  1. What is X?  ", "what is x", "What   is Y?", "", 42, "Why Z?", "no"]}
    )
    assert parse_reply(content, 2) == ["What is X?", "What is Y?"]


def test_fewer_questions_than_asked_are_kept() -> None:
    assert parse_reply(json.dumps({"questions": ["What is X here?"]}), 3) == ["What is X here?"]


def test_fenced_json_is_accepted() -> None:
    assert parse_reply('```json\n{"questions": ["What is fenced?"]}\n```', 1) == ["What is fenced?"]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("", "empty"),
        (None, "empty"),
        ("this is {not json", "not JSON"),
        ('{"answer": "x"}', 'no "questions"'),
        ('{"questions": []}', "no usable"),
        ('{"questions": ["", "short"]}', "no usable"),
    ],
)
def test_unusable_replies_say_why(content: str | None, why: str) -> None:
    with pytest.raises(InvalidReply, match=why):
        parse_reply(content, 1)
