"""Parsing the local model's numbered completions (its real habits, seen on SmolLM2-135M), and
the rules that keep only whole, specific questions."""

from __future__ import annotations

import pytest

from dmdesk.llm.local_generator import (
    LocalGenerator,
    is_generic,
    keyword_query,
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
            'What is the "assert" statement?',  # was "What is The …" (issue 25)
        ),
        (
            "Customizing attribute access\n****\n\nThese methods…",
            "How does customizing attribute access work?",  # was "What are Customizing …"
        ),
        ("Debian GNU/Linux\n****\n\nA free system.", "What is Debian GNU/Linux?"),
        ("Status\n****\n\nThe state.", "What is Status?"),
        ("Assignment statements\n****\n\nThey bind names.", "What are Assignment statements?"),
        ('If the name occurs in a "global" statement, it is bound.', 'What does "global" do?'),
    ],
)
def test_the_fallback_question_names_the_chunks_subject(text: str, question: str) -> None:
    assert subject_question(text) == question


def test_a_keyword_query_is_the_content_words_of_the_questions() -> None:
    assert keyword_query(["How do I install a package?"]) == "install package"
    assert (
        keyword_query(["What does apt-get do?", "How can I use apt-get offline?"])
        == "apt-get offline"
    )
    assert keyword_query(["What is it?"]) is None  # under two words: no query


def test_several_questions_come_in_the_prompts_styles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 25: a natural question, a how-do-I question, then a keyword query; each model
    call is one question led by its style's word."""
    import asyncio

    leads: list[str] = []
    replies = {
        "What": ["What does apt-get install do?"],
        "How do I": ["How do I install a package with apt-get?"],
    }

    def fake(self: LocalGenerator, text: str, lead: str = "What", interrupt: object = None):
        leads.append(lead)
        return replies.get(lead, [])

    monkeypatch.setattr(LocalGenerator, "_generate_sync", fake)
    got = asyncio.run(LocalGenerator().generate("apt-get install fetches a package.", 3))
    assert got == [
        "What does apt-get install do?",
        "How do I install a package with apt-get?",
        "apt-get install package",
    ]
    assert leads == ["What", "How do I"]
    leads.clear()
    replies.clear()  # the model writes nothing: the chunk's subject, and its keywords
    got = asyncio.run(LocalGenerator().generate("Package pinning\n***\n\nPins.", 3))
    assert got[0] == "What is Package pinning?" and "Package pinning" in got
    assert leads == ["What", "How", "How do I", "Can I"]


def test_the_model_leaves_the_process_when_the_job_closes_the_generator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 26: the window held 1.9 GB after the demo's generation (the local LLM stayed
    loaded). Closing the generator (the end of every generation) drops it."""
    import asyncio
    import gc
    import weakref

    from dmdesk.llm import local_generator

    class Model:  # stands for the loaded model: only its lifetime matters here
        pass

    model = Model()
    monkeypatch.setattr(local_generator, "_model", model)
    monkeypatch.setattr(local_generator, "_tokenizer", object())
    alive = weakref.ref(model)
    del model
    asyncio.run(LocalGenerator().aclose())
    gc.collect()
    assert local_generator._model is None and local_generator._tokenizer is None
    assert alive() is None
    assert LocalGenerator().preparation() is not None  # the next job says it loads it again
