"""Scores of answers: pass@1, maj@k, pass@k (unbiased estimator), standard errors, per-level tables.

Pure functions over lists; `reasoner.phases.evaluate` runs the model and calls these.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021, arXiv 2107.03374):
    1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority(answers: Sequence[str | None], correct: Sequence[bool]) -> bool:
    """maj@k for one problem: is the most frequent extracted answer a correct one?
    Ties go to the answer seen first; samples with no answer do not vote."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return False
    top = max(votes.values())
    for a, ok in zip(answers, correct, strict=True):
        if a is not None and votes[a] == top:
            return ok
    return False


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error (sample standard deviation / sqrt(n))."""
    n = len(values)
    if n == 0:
        return 0.0, 0.0
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def by_group(groups: Sequence[str], values: Sequence[float]) -> dict[str, dict[str, float]]:
    """Mean, standard error and count of ``values`` per group label (e.g. MATH level)."""
    out: dict[str, list[float]] = {}
    for g, v in zip(groups, values, strict=True):
        out.setdefault(g, []).append(v)
    return {
        g: {"mean": mean_stderr(vs)[0], "stderr": mean_stderr(vs)[1], "n": len(vs)} for g, vs in sorted(out.items())
    }


RANK_RULES = ("min", "last", "sum")


def rank_score(step_scores: Sequence[float], rule: str) -> float:
    """One number per solution from its step scores, for best-of-n: ``min`` (the weakest step,
    as PRM best-of-n usually ranks; Lightman et al. 2023), ``last`` (the final step's score) or
    ``sum``. A solution with no scored step ranks last."""
    if rule not in RANK_RULES:
        raise ValueError(f"rank rule must be one of {', '.join(RANK_RULES)}, got {rule!r}")
    if not step_scores:
        return -math.inf
    if rule == "min":
        return min(step_scores)
    if rule == "last":
        return step_scores[-1]
    return sum(step_scores)


def best_of(scores: Sequence[Sequence[float]], correct: Sequence[bool], rule: str) -> tuple[int, bool]:
    """Best-of-n for one problem: the index of the sample ranked first by ``rule`` over its step
    scores (ties go to the earlier sample) and whether it is correct."""
    ranked = [rank_score(s, rule) for s in scores]
    best = max(range(len(ranked)), key=lambda i: (ranked[i], -i))
    return best, bool(correct[best])


def ks_upto(top: int) -> list[int]:
    """The k of the pass@k reported from ``top`` samples: 1, 2, 4, ... and ``top`` itself."""
    return sorted({2**i for i in range(top.bit_length())} | {top})


def pairwise_accuracy(scores: Sequence[Sequence[float]], correct: Sequence[bool], rule: str) -> tuple[float, int]:
    """A reward's accuracy on one problem's verified pairs: over every (correct, incorrect)
    pair of its samples, the share the reward ranks correct-first by ``rule`` (a tie counts
    half). Returns (hits, pairs); (0, 0) when the problem has no such pair."""
    ranked = [rank_score(s, rule) for s in scores]
    good = [r for r, ok in zip(ranked, correct, strict=True) if ok]
    bad = [r for r, ok in zip(ranked, correct, strict=True) if not ok]
    hits = sum(1.0 if g > b else 0.5 if g == b else 0.0 for g in good for b in bad)
    return hits, len(good) * len(bad)
