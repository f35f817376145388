"""Selecting the policy's training samples by process rewards, without gold step labels.

A labeller's step scores (as the label phase stored them in `Trajectory.step_rewards`, shaped
as `label.shaping` says) are aggregated per trajectory (`min`: the weakest step, as a PRM's
verdict on a solution is usually taken; `sum`), and a verified-correct sample is kept when its
score clears a threshold. The threshold is calibrated on the iteration's own training rollouts,
from their outcome labels alone: the value that best separates correct from incorrect samples
(balanced accuracy), so no test data and no step labels are read. (ImplicitPRM's ProcessBench
script picks its threshold on the data it scores, which inflates its figures; this does not.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import groupby

from reasoner.registry import Registry

RULES: Registry[Callable[[list[float]], float]] = Registry("selection rule")
RULES.register("min")(lambda scores: min(scores) if scores else 0.0)
RULES.register("sum")(lambda scores: float(sum(scores)))


def calibrate(scores: list[float], correct: list[bool]) -> float:
    """The threshold t maximising the balanced accuracy of "score >= t" as a prediction of a
    correct outcome, over the candidate thresholds (every observed score); ties go to the
    lowest t (keep more). With only one class present, the lowest score (keep all)."""
    if not scores:
        return float("-inf")
    pos = sum(correct)
    neg = len(correct) - pos
    if pos == 0 or neg == 0:
        return min(scores)
    # one sweep up the distinct sorted scores: below threshold t lie the samples already passed
    best_t, best = min(scores), -1.0
    below_pos = below_neg = 0
    for t, group in groupby(sorted(zip(scores, correct, strict=True)), key=lambda pair: pair[0]):
        balanced = ((pos - below_pos) / pos + below_neg / neg) / 2  # tp / pos + tn / neg
        if balanced > best:
            best_t, best = t, balanced
        flags = [c for _, c in group]
        below_pos, below_neg = below_pos + sum(flags), below_neg + len(flags) - sum(flags)
    return best_t


def pair_accuracy(samples: Iterable[tuple[str, bool, float]]) -> tuple[float, int]:
    """How well a reward orders a problem's verified samples, from outcome labels alone: over
    every (correct, incorrect) pair of samples of one problem (``samples``: problem id, correct,
    score), the share in which the correct one scores higher, a tie counting half (the
    within-problem AUC; 0.5 is a coin). Returns (accuracy, pairs); accuracy is nan with no pair.
    A reward the policy is ranked or selected by should stay above 0.5 here as it is retrained."""
    by_problem: dict[str, tuple[list[float], list[float]]] = {}
    for problem, correct, score in samples:
        by_problem.setdefault(problem, ([], []))[0 if correct else 1].append(score)
    won, pairs = 0.0, 0
    for right, wrong in by_problem.values():
        for a in right:
            for b in wrong:
                won += 1.0 if a > b else 0.5 if a == b else 0.0
        pairs += len(right) * len(wrong)
    return (won / pairs if pairs else float("nan")), pairs
