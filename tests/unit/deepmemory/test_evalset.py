"""The evaluation set mapped onto a store: what `dmdesk evaluate` measures and what every local
training run is judged on are the same questions (dmdesk.deepmemory.evalset.answerable)."""

from __future__ import annotations

from dmdesk.deepmemory.evalset import answerable


def test_blank_questions_and_questions_without_an_answer_in_the_store_are_dropped() -> None:
    kept = answerable(
        ["How do I install?", "  ", "What is gone?", "Which two?"],
        [["b"], ["a"], ["zz"], ["c", "missing", "a"]],
        ["a", "b", "c"],
    )
    assert kept.questions == ["How do I install?", "Which two?"]
    assert kept.rows == [[1], [2, 0]]
    assert kept.chunk_ids == [["b"], ["c", "a"]]


def test_nothing_answerable_gives_an_empty_set() -> None:
    kept = answerable(["Why?"], [["x"]], ["a"])
    assert (kept.questions, kept.rows, kept.chunk_ids) == ([], [], [])
