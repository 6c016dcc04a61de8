"""Deep Memory must prove itself on pairs it never saw before anything uses it.

* :func:`split_pairs` divides approved pairs into train (60 %), validation (20 %) and test
  (20 %) **by chunk** (a stable hash of the chunk id), so no test question's chunk was seen in
  training and a re-submission (Proceed) splits exactly the same way. Training chooses its
  strength on validation; the test pairs only judge.
* :func:`decide` compares the new model with the one in use — the active model of the store, or
  no Deep Memory — on the test pairs: the paired gain in reciprocal rank (MRR) with a bootstrap
  95 % confidence interval. The model is activated only when the interval's lower end is above
  zero. Otherwise the run still completes and says "not activated: no measurable gain (…)".
* Fewer than SMALL_SAMPLE test pairs: the interval is reported with a warning.

Why: a query adapter trained on poor synthetic questions lowered recall@1 on real questions by
17 % and dmdesk used it anyway (issue 10). Published lifts are modest (DESIGN.md), so only a
measured gain on unseen pairs is trusted.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_TEST_PAIRS = 5
SMALL_SAMPLE = 30
BOOTSTRAP_SAMPLES = 4000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Split:
    train: list[int]
    validation: list[int]
    test: list[int]

    @property
    def measurable(self) -> bool:
        return len(self.test) >= MIN_TEST_PAIRS and bool(self.validation) and bool(self.train)


def _bucket(chunk_id: str) -> int:
    return zlib.crc32(chunk_id.encode("utf-8")) % 10


def split_pairs(chunk_ids: Sequence[str]) -> Split:
    """Indices of pairs for train / validation / test, grouped by chunk id (deterministic)."""
    train: list[int] = []
    validation: list[int] = []
    test: list[int] = []
    for i, cid in enumerate(chunk_ids):
        b = _bucket(str(cid))
        (test if b < 2 else validation if b < 4 else train).append(i)
    return Split(train, validation, test)


def reciprocal_ranks(ranks: Sequence[int | None]) -> np.ndarray:
    return np.asarray([1.0 / r if r else 0.0 for r in ranks], dtype=np.float64)


def bootstrap_gain(
    base: np.ndarray, new: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> tuple[float, float, float]:
    """Mean paired gain new − base and its percentile bootstrap interval."""
    diff = np.asarray(new, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    if len(diff) == 0:
        return 0.0, 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(diff.mean()), float(lo), float(hi)


def decide(metrics: dict[str, Any]) -> dict[str, Any]:
    """The activation verdict for a trained model, from its held-out ranks:
    `heldout_ranks = {"before": [...], "after": [...], "active": [...] (optional),
    "active_run": id}`; a rank is 1-based or None (not retrieved)."""
    ranks = metrics.get("heldout_ranks") or {}
    new = ranks.get("after")
    n = len(new or [])
    if metrics.get("evaluated_on") != "held-out pairs" or n < MIN_TEST_PAIRS:
        held_out = metrics.get("evaluated_on") == "held-out pairs"
        tests = n if held_out else int(metrics.get("split_test_pairs", 0))
        approved = metrics.get("approved_pairs")
        of = f" of the {approved} approved pairs" if approved is not None else ""
        return {
            "activated": False,
            "reason": (
                f"not activated: too few test pairs to measure a gain — {tests}{of} "
                f"{'is a test pair' if tests == 1 else 'are test pairs'} (the pairs of about "
                f"1 chunk in 5, never trained on), and at least {MIN_TEST_PAIRS} are needed: "
                f"about {MIN_TEST_PAIRS * 5} approved pairs on different chunks give "
                f"{MIN_TEST_PAIRS}"
            ),
            "pairs": tests,
            "small_sample": True,
        }
    if ranks.get("active") is not None:
        base, baseline = ranks["active"], f"the active model (run #{ranks.get('active_run')})"
    else:
        base, baseline = ranks.get("before") or [], "no Deep Memory"
    b, a = reciprocal_ranks(base or []), reciprocal_ranks(new or [])
    gain, lo, hi = bootstrap_gain(b, a)
    facts = (
        f"held-out MRR {b.mean():.3f} → {a.mean():.3f} against {baseline}, gain {gain:+.3f}, "
        f"95 % CI {lo:+.3f}…{hi:+.3f} on {n} pairs"
    )
    small = n < SMALL_SAMPLE
    if small:
        facts += f"; a small sample (under {SMALL_SAMPLE} pairs)"
    activated = lo > 0
    return {
        "activated": activated,
        "reason": ("activated: " if activated else "not activated: no measurable gain (")
        + facts
        + ("" if activated else ")"),
        "baseline": baseline,
        "mrr_baseline": float(b.mean()),
        "mrr_new": float(a.mean()),
        "gain": gain,
        "ci": [lo, hi],
        "pairs": n,
        "small_sample": small,
    }
