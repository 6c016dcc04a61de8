"""The activation guard: split by chunk, paired bootstrap on held-out reciprocal ranks."""

from __future__ import annotations

import numpy as np

from dmdesk.deepmemory.guard import SMALL_SAMPLE, bootstrap_gain, decide, split_pairs


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
