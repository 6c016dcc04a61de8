"""The activation guard: the split (by chunk, and question by question for chunks with several),
the paired bootstrap on held-out reciprocal ranks, the unseen-chunks slice, the evaluation set."""

from __future__ import annotations

import numpy as np

from dmdesk.deepmemory.guard import (
    NO_EVALUATION_SET,
    SMALL_SAMPLE,
    bootstrap_gain,
    decide,
    split_pairs,
    verdict_lines,
)


def test_split_is_by_chunk_deterministic_and_about_60_20_20() -> None:
    chunks = [f"chunk-{i % 700:05d}" for i in range(1000)]  # some chunks have two pairs
    split = split_pairs(chunks)
    assert split == split_pairs(chunks)
    parts = [set(split.train), set(split.validation), set(split.test)]
    assert sorted(i for p in parts for i in p) == list(range(1000))
    for a in range(3):
        for b in range(a + 1, 3):
            assert not {chunks[i] for i in parts[a]} & {chunks[i] for i in parts[b]}
    assert 150 <= len(split.test) <= 250 and 150 <= len(split.validation) <= 250


def held(before: list[int | None], after: list[int | None], **extra) -> dict:
    return {
        "evaluated_on": "held-out pairs",
        "heldout_ranks": {"before": before, "after": after, **extra},
    }


def test_a_worse_model_is_refused() -> None:
    rng = np.random.default_rng(0)
    before = [int(r) for r in rng.integers(1, 3, size=100)]
    after = [r + 2 for r in before]
    d = decide(held(before, after))
    assert d["activated"] is False and d["gain"] < 0
    assert d["reason"].startswith("not activated: no measurable gain (held-out MRR")


def test_a_clearly_better_model_is_activated() -> None:
    rng = np.random.default_rng(1)
    before = [int(r) for r in rng.integers(2, 10, size=100)]
    after = [1 if i % 3 else b for i, b in enumerate(before)]
    d = decide(held(before, after))
    assert d["activated"] is True and d["ci"][0] > 0 and not d["small_sample"]


def test_no_change_is_not_a_gain() -> None:
    ranks = [1, 2, 3, None] * 20
    d = decide(held(ranks, list(ranks)))
    assert d["activated"] is False and d["ci"] == [0.0, 0.0]


def test_the_baseline_is_the_active_model_when_there_is_one() -> None:
    before = [5] * 40
    after = [2] * 40
    active = [1] * 40
    d = decide(held(before, after, active=active, active_run=3))
    assert d["baseline"] == "the active model (run #3)" and d["activated"] is False


def test_small_samples_carry_their_interval_and_a_warning() -> None:
    d = decide(held([3] * 12, [1] * 12))
    assert d["pairs"] == 12 < SMALL_SAMPLE and d["small_sample"]
    assert "95 % CI" in d["reason"] and "small sample" in d["reason"]


def test_too_few_unseen_pairs_are_never_activated() -> None:
    d = decide({"evaluated_on": "training pairs", "heldout_ranks": {"before": [9], "after": [1]}})
    assert d["activated"] is False and "too few test pairs" in d["reason"]
    assert decide({"recall@10": 0.8})["activated"] is False


def test_the_small_sample_message_counts_test_pairs_and_says_what_would_do() -> None:
    """Issue 26: "(21; at least 5 needed)" read as if 21 were fewer than 5. The 5 are test
    pairs: say how many there are, out of how many approved, and what would give 5."""
    d = decide(
        {
            "evaluated_on": "training pairs",
            "approved_pairs": 21,
            "split_test_pairs": 3,
            "heldout_ranks": {"before": [2] * 21, "after": [1] * 21},
        }
    )
    assert d["activated"] is False and d["pairs"] == 3
    assert "3 of the 21 approved pairs are test pairs" in d["reason"]
    assert "at least 5 are needed" in d["reason"] and "about 25 approved pairs" in d["reason"]


def test_bootstrap_interval_brackets_the_mean() -> None:
    rng = np.random.default_rng(2)
    base, new = rng.random(200), rng.random(200) + 0.05
    mean, lo, hi = bootstrap_gain(base, new)
    assert lo < mean < hi
    assert bootstrap_gain(base, new) == (mean, lo, hi)  # seeded: reproducible


# -- issue 25: validate as Deep Memory is used; judge on real questions -----------------------


def three_questions_each(n_chunks: int) -> tuple[list[str], list[str]]:
    chunks = [f"chunk-{i:05d}" for i in range(n_chunks) for _ in range(3)]
    questions = [f"{style} about chunk {i}?" for i in range(n_chunks) for style in "abc"]
    return chunks, questions


def test_a_chunk_with_several_questions_trains_on_one_and_holds_out_new_questions() -> None:
    chunks, questions = three_questions_each(600)
    split = split_pairs(chunks, questions)
    assert split == split_pairs(chunks, questions)  # a re-submission splits the same way
    parts = [split.train, split.validation, split.test]
    assert sorted(i for p in parts for i in p) == list(range(len(chunks)))
    trained = {chunks[i] for i in split.train}
    # validation asks new questions about trained chunks — the deployment case
    assert split.validation and all(chunks[i] in trained for i in split.validation)
    seen_test = [i for i in split.test if chunks[i] in trained]
    assert len(seen_test) >= 0.1 * len(chunks)  # held out question by question
    # the unseen-chunks slice: whole chunks held out, about 1 in 10
    assert set(split.unseen) == {i for i in split.test if chunks[i] not in trained}
    unseen_chunks = {chunks[i] for i in split.unseen}
    assert 40 <= len(unseen_chunks) <= 80
    assert all(chunks[i] not in unseen_chunks for i in split.train + split.validation)
    assert 0.1 * len(chunks) <= len(split.validation) <= 0.2 * len(chunks)


def test_chunks_with_one_question_are_still_split_by_chunk() -> None:
    chunks = [f"chunk-{i:05d}" for i in range(1000)]
    questions = [f"what is {c}?" for c in chunks]
    split = split_pairs(chunks, questions)
    assert split.train == split_pairs(chunks).train and split.test == split_pairs(chunks).test
    assert set(split.unseen) == set(split.test)  # every test chunk is unseen


def with_slice(before, after, unseen, **extra) -> dict:
    m = held(before, after, **extra)
    m["heldout_ranks"]["unseen"] = unseen
    return m


def test_a_model_worse_on_chunks_it_never_trained_on_is_refused() -> None:
    """Memorising the trained chunks must not cost the others: better overall on held-out
    pairs, worse on the unseen-chunks slice → not activated."""
    before = [3] * 60
    after = [1] * 50 + [5] * 10  # the last 10 are the unseen slice: 1/3 → 1/5
    d = decide(with_slice(before, after, list(range(50, 60))))
    assert d["ci"][0] > 0  # a clear held-out gain…
    assert d["activated"] is False  # …and still refused
    assert d["reason"].startswith("not activated: worse on questions about chunks it never")
    assert d["unseen"]["pairs"] == 10


def test_an_unseen_slice_too_small_to_judge_is_reported_not_binding() -> None:
    before, after = [3] * 60, [1] * 58 + [5] * 2
    d = decide(with_slice(before, after, [58, 59]))
    assert d["activated"] is True and "(too few to judge)" in d["reason"]


def real(before, after, **extra) -> dict:
    return {"evaluation_ranks": {"before": before, "after": after, **extra}}


def test_a_model_worse_on_the_evaluation_set_is_refused_though_better_on_held_out_pairs() -> None:
    rng = np.random.default_rng(1)
    b = [int(r) for r in rng.integers(2, 10, size=100)]
    m = held(b, [1 if i % 3 else r for i, r in enumerate(b)])
    assert decide(m)["activated"] is True  # on synthetic questions alone it would be used
    m |= real([1] * 40 + [4] * 10, [1] * 39 + [2] + [4] * 10)  # one real question drops
    d = decide(m)
    assert d["activated"] is False
    assert d["reason"].startswith("not activated: worse on the evaluation set (MRR, recall@1")
    assert d["judged_on"] == "real questions (the evaluation set)"
    assert d["evaluation"]["pairs"] == 50


def test_better_on_the_evaluation_set_is_enough_when_the_held_out_pairs_show_no_gain() -> None:
    ranks = [1, 2, 3, None] * 20
    m = held(ranks, list(ranks)) | real([3] * 60, [1] * 60)
    d = decide(m)
    assert d["activated"] is True and d["evaluation"]["ci"][0] > 0
    assert "evaluation set (60 real questions) MRR 0.333 → 1.000" in d["reason"]


def test_an_evaluation_set_judges_even_when_the_held_out_pairs_are_too_few() -> None:
    m = {"evaluated_on": "training pairs", "heldout_ranks": {"before": [9], "after": [1]}}
    assert decide(m | real([2] * 30, [2] * 30))["reason"].startswith(
        "not activated: no measurable gain (evaluation set"
    )
    assert decide(m | real([2] * 30, [1] * 30))["activated"] is True


def test_the_baseline_on_the_evaluation_set_is_the_active_model_when_there_is_one() -> None:
    m = held([5] * 40, [1] * 40, active=[5] * 40, active_run=2) | real(
        [5] * 40, [2] * 40, active=[1] * 40
    )
    d = decide(m)
    assert d["activated"] is False and "worse on the evaluation set" in d["reason"]


def test_the_verdicts_in_words_say_when_they_rest_on_synthetic_questions() -> None:
    m = held([3] * 40, [1] * 40) | {"backend": "local"}
    m["activation"] = decide(m)
    lines = verdict_lines(m)
    assert lines[0].startswith("Held-out synthetic questions (40): MRR 0.333 → 1.000")
    assert lines[-1] == NO_EVALUATION_SET and "synthetic questions" in lines[-1]
    m |= real([2] * 30, [1] * 30)
    m["activation"] = decide(m)
    assert verdict_lines(m)[-1].startswith(
        "Evaluation set (30 real questions): MRR 0.500 → 1.000, recall@1 0.000 → 1.000"
    )
