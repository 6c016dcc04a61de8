"""Deep Memory must prove itself on questions it never saw before anything uses it.

* :func:`split_pairs` divides approved pairs into train, validation and test, deterministically
  (stable hashes of chunk id and question, so a re-submission — Proceed — splits the same way):

  - a chunk with **several** questions is how Deep Memory is used — users ask new questions about
    the chunks the model trained on. One of its questions always trains; the others are held out
    whole, question by question (about 20 % test, 20 % validation). About 1 such chunk in 10 is
    held out entirely;
  - a chunk with **one** question is split by chunk as before (60 / 20 / 20).

  The test pairs whose chunk has no training pair form the **unseen-chunks slice**
  (`Split.unseen`): a model must not be worse on it, so memorising some chunks never costs the
  others. Validation chooses the training strength; the test only judges.
* :func:`decide` compares the new model with the one in use — the active model of the store, or
  no Deep Memory — on the test pairs: the paired gain in reciprocal rank (MRR) with a bootstrap
  95 % confidence interval.
* With an **evaluation set** (real questions the admin imported, dmdesk.deepmemory.evalset) the
  model is also measured on it, and the verdict rests on it: activated only when it is not worse
  there on MRR, recall@1 and recall@10, not worse on the unseen-chunks slice, and better — the
  interval's lower end above zero — on the evaluation set or on the held-out pairs. Without one
  the verdict rests on synthetic questions, and says so (`judged_on`).
* Fewer than SMALL_SAMPLE test pairs: the interval is reported with a warning.

Why: a query adapter trained on poor synthetic questions lowered recall@1 on real questions by
17 % and dmdesk used it anyway (issue 10); and validation on synthetic questions does not
predict real ones (issue 25). Published lifts are modest (DESIGN.md), so only a measured gain is
trusted, on real questions whenever the admin has some.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

MIN_TEST_PAIRS = 5
SMALL_SAMPLE = 30
BOOTSTRAP_SAMPLES = 4000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Split:
    train: list[int]
    validation: list[int]
    test: list[int]
    # Test pairs whose chunk has no training pair (chunk-disjoint), as indices into the pairs.
    unseen: tuple[int, ...] = ()

    @property
    def measurable(self) -> bool:
        return len(self.test) >= MIN_TEST_PAIRS and bool(self.validation) and bool(self.train)


def _bucket(key: str) -> int:
    return zlib.crc32(key.encode("utf-8")) % 10


def split_pairs(chunk_ids: Sequence[str], questions: Sequence[str] | None = None) -> Split:
    """Indices of pairs for train / validation / test (deterministic). Without `questions`, or
    for a chunk with one question, by chunk; a chunk with several questions keeps one in
    training and holds the others out question by question (see the module's docstring)."""
    groups: dict[str, list[int]] = {}
    for i, cid in enumerate(chunk_ids):
        groups.setdefault(str(cid), []).append(i)
    train: list[int] = []
    validation: list[int] = []
    test: list[int] = []
    for cid, members in groups.items():
        b = _bucket(cid)
        if questions is None or len(members) == 1:
            (test if b < 2 else validation if b < 4 else train).extend(members)
            continue
        if b == 0:  # the whole chunk is held out: the unseen-chunks slice
            test.extend(members)
            continue
        ordered = sorted(members, key=lambda i: (_bucket_raw(cid, questions[i]), i))
        train.append(ordered[0])
        for i in ordered[1:]:
            q = _bucket_raw(cid, questions[i]) % 10
            (test if q < 2 else validation if q < 4 else train).append(i)
    train.sort()
    validation.sort()
    test.sort()
    trained = {str(chunk_ids[i]) for i in train}
    unseen = tuple(i for i in test if str(chunk_ids[i]) not in trained)
    return Split(train, validation, test, unseen)


def _bucket_raw(chunk_id: str, question: str) -> int:
    return zlib.crc32(f"{chunk_id}\0{question.strip().casefold()}".encode())


def reciprocal_ranks(ranks: Sequence[int | None]) -> NDArray[np.float32]:
    return np.asarray([1.0 / r if r else 0.0 for r in ranks], dtype=np.float64)


def bootstrap_gain(
    base: NDArray[np.float32],
    new: NDArray[np.float32],
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
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


def _compare(base: Sequence[int | None], new: Sequence[int | None]) -> dict[str, Any]:
    """MRR, recall@1 and recall@10 of `base` and `new` (ranks of the same questions) and the
    paired MRR gain with its bootstrap interval."""
    b, a = reciprocal_ranks(base), reciprocal_ranks(new)
    gain, lo, hi = bootstrap_gain(b, a)

    def recall(ranks: Sequence[int | None], k: int) -> float:
        return sum(1 for r in ranks if r and r <= k) / max(len(ranks), 1)

    return {
        "mrr_baseline": float(b.mean()) if len(b) else 0.0,
        "mrr_new": float(a.mean()) if len(a) else 0.0,
        "recall@1": [recall(base, 1), recall(new, 1)],
        "recall@10": [recall(base, 10), recall(new, 10)],
        "gain": gain,
        "ci": [lo, hi],
        "pairs": len(a),
    }


def _worse_on(c: dict[str, Any]) -> list[str]:
    """The metrics on which the new model is below its baseline."""
    worse = ["MRR"] if c["mrr_new"] < c["mrr_baseline"] - 1e-12 else []
    return worse + [k for k in ("recall@1", "recall@10") if c[k][1] < c[k][0] - 1e-12]


def _too_few(metrics: dict[str, Any], n: int) -> dict[str, Any]:
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
        "judged_on": "synthetic questions",
    }


def decide(metrics: dict[str, Any]) -> dict[str, Any]:
    """The activation verdict for a trained model, from its held-out ranks:
    `heldout_ranks = {"before": [...], "after": [...], "active": [...] (optional),
    "active_run": id, "unseen": [positions of the unseen-chunks slice] (optional)}` and, with an
    evaluation set, `evaluation_ranks = {"before", "after", "active" (optional)}`; a rank is
    1-based or None (not retrieved)."""
    ranks = metrics.get("heldout_ranks") or {}
    new = ranks.get("after") or []
    n = len(new)
    measurable = metrics.get("evaluated_on") == "held-out pairs" and n >= MIN_TEST_PAIRS
    real = metrics.get("evaluation_ranks") or {}
    has_real = len(real.get("after") or []) >= MIN_TEST_PAIRS
    if not measurable and not has_real:
        return _too_few(metrics, n)
    active = ranks.get("active") is not None
    baseline = f"the active model (run #{ranks.get('active_run')})" if active else "no Deep Memory"
    decision: dict[str, Any] = {"baseline": baseline}
    facts: list[str] = []
    better = False
    why: str | None = None
    if measurable:
        held = _compare(ranks["active"] if active else ranks.get("before") or [], new)
        better = held["ci"][0] > 0
        facts.append(
            f"held-out MRR {held['mrr_baseline']:.3f} → {held['mrr_new']:.3f} against "
            f"{baseline}, gain {held['gain']:+.3f}, 95 % CI {held['ci'][0]:+.3f}…"
            f"{held['ci'][1]:+.3f} on {n} pairs"
        )
        if n < SMALL_SAMPLE:
            facts[-1] += f"; a small sample (under {SMALL_SAMPLE} pairs)"
        decision |= {k: held[k] for k in ("mrr_baseline", "mrr_new", "gain", "ci")}
        decision |= {"pairs": n, "small_sample": n < SMALL_SAMPLE}
        slice_at = [int(i) for i in ranks.get("unseen") or [] if 0 <= int(i) < n]
        if slice_at and len(slice_at) < n:
            base = ranks["active"] if active else ranks.get("before") or []
            unseen = _compare([base[i] for i in slice_at], [new[i] for i in slice_at])
            decision["unseen"] = unseen
            judged = len(slice_at) >= MIN_TEST_PAIRS
            facts.append(
                f"on the {len(slice_at)} of them about chunks it never trained on MRR "
                f"{unseen['mrr_baseline']:.3f} → {unseen['mrr_new']:.3f}"
                + ("" if judged else " (too few to judge)")
            )
            if judged and unseen["mrr_new"] < unseen["mrr_baseline"] - 1e-12:
                why = "worse on questions about chunks it never trained on"
    if has_real:
        real_active = real.get("active") is not None
        on_real = _compare(
            real["active"] if real_active else real.get("before") or [], real["after"]
        )
        decision["evaluation"] = on_real
        facts.append(
            f"evaluation set ({on_real['pairs']} real questions) MRR "
            f"{on_real['mrr_baseline']:.3f} → {on_real['mrr_new']:.3f}, recall@1 "
            f"{on_real['recall@1'][0]:.3f} → {on_real['recall@1'][1]:.3f}, 95 % CI "
            f"{on_real['ci'][0]:+.3f}…{on_real['ci'][1]:+.3f}"
        )
        worse = _worse_on(on_real)
        if worse:
            why = f"worse on the evaluation set ({', '.join(worse)})"
        better = better or on_real["ci"][0] > 0
        decision.setdefault("pairs", on_real["pairs"])
        decision.setdefault("small_sample", on_real["pairs"] < SMALL_SAMPLE)
    activated = why is None and better
    if why is None and not better:
        why = "no measurable gain"
    decision |= {
        "activated": activated,
        "reason": ("activated: " if activated else f"not activated: {why} (")
        + "; ".join(facts)
        + ("" if activated else ")"),
        "judged_on": "real questions (the evaluation set)" if has_real else "synthetic questions",
    }
    return decision


NO_EVALUATION_SET = (
    "No evaluation set: this verdict rests on synthetic questions (dmdesk's own, held out). "
    "Save real questions as the store's evaluation set (File → Evaluation set…, or dmdesk "
    "evaluate QUERIES.jsonl QRELS.tsv --save) to judge models on what users ask."
)


def verdict_lines(metrics: dict[str, Any] | None) -> list[str]:
    """Both verdicts of a trained run in words, for the window and `dmdesk run`: on the
    held-out synthetic pairs and on the evaluation set of real questions (or that there is
    none, so the verdict rests on synthetic questions)."""
    m = metrics or {}
    decision = m.get("activation")
    if not isinstance(decision, dict):
        return []
    lines = []
    if "mrr_new" in decision:
        ci = decision.get("ci") or [0.0, 0.0]
        lines.append(
            f"Held-out synthetic questions ({decision.get('pairs')}): MRR "
            f"{decision['mrr_baseline']:.3f} → {decision['mrr_new']:.3f}, 95 % CI of the gain "
            f"{ci[0]:+.3f}…{ci[1]:+.3f}"
        )
    unseen = decision.get("unseen")
    if isinstance(unseen, dict):
        lines.append(
            f"Of them, about chunks it never trained on ({unseen['pairs']}): MRR "
            f"{unseen['mrr_baseline']:.3f} → {unseen['mrr_new']:.3f}"
        )
    real = decision.get("evaluation")
    if isinstance(real, dict):
        r1, r10 = real["recall@1"], real["recall@10"]
        lines.append(
            f"Evaluation set ({real['pairs']} real questions): MRR {real['mrr_baseline']:.3f} → "
            f"{real['mrr_new']:.3f}, recall@1 {r1[0]:.3f} → {r1[1]:.3f}, recall@10 "
            f"{r10[0]:.3f} → {r10[1]:.3f}"
        )
    elif m.get("backend") == "deeplake":
        lines.append(
            "DeepLake Cloud runs are judged on held-out pairs; measure the active model on "
            "real questions with dmdesk evaluate."
        )
    else:
        lines.append(NO_EVALUATION_SET)
    return lines
