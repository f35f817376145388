"""Step-level evaluation of labellers against gold step correctness.

First-error F1 as ProcessBench defines it (Zheng et al., arXiv 2412.06559): each solution has
the index of its first wrong step, or -1 when all steps are right; a labeller predicts the
first step it scores below a threshold (or -1). Accuracy is taken separately on erroneous and
on correct solutions, and F1 is their harmonic mean.

Steps the gold cannot check (``None``: no calculation and no answer in them) are left out on
both sides: the gold's first error is the first checkable step it calls wrong, and a
labeller's prediction is the first checkable step it scores below the threshold, so neither
gains nor loses for what it says about a step nobody can grade.

A solution with no checkable step therefore counts as correct, and every labeller gets it right.
A policy that writes such solutions (prose without calculations) and one checkable wrong step
otherwise makes a labeller that calls every step wrong score high. `every_step_wrong` is that
labeller's figure on the same solutions: a labeller is informative only by how far it beats it.
"""

from __future__ import annotations

import math


def first_error(labels: list[bool | None]) -> int:
    """Index of the first step labelled wrong (False); -1 when there is none."""
    for i, ok in enumerate(labels):
        if ok is False:
            return i
    return -1


def predicted_first_error(scores: list[float], threshold: float, gold: list[bool | None] | None = None) -> int:
    """Index of the first step scored below ``threshold`` (-1 when none is); with ``gold``, steps
    whose gold label is None are skipped."""
    for i, s in enumerate(scores):
        if s < threshold and (gold is None or i >= len(gold) or gold[i] is not None):
            return i
    return -1


def first_error_f1(gold: list[int], pred: list[int]) -> dict[str, float]:
    err = [(g, p) for g, p in zip(gold, pred, strict=True) if g != -1]
    ok = [(g, p) for g, p in zip(gold, pred, strict=True) if g == -1]
    acc_err = sum(g == p for g, p in err) / len(err) if err else 0.0
    acc_ok = sum(p == -1 for _, p in ok) / len(ok) if ok else 0.0
    f1 = 2 * acc_err * acc_ok / (acc_err + acc_ok) if acc_err + acc_ok > 0 else 0.0
    return {"error_acc": acc_err, "correct_acc": acc_ok, "f1": f1, "n_error": len(err), "n_correct": len(ok)}


def every_step_wrong(gold: list[list[bool | None]]) -> dict[str, float]:
    """First-error F1 of the labeller that calls every step wrong (it predicts each solution's
    first checkable step), on solutions with these gold labels: the floor an informative
    labeller must beat. With ``uncheckable``, the number of solutions without a checkable step."""
    pred = [predicted_first_error([-math.inf] * len(row), 0.0, row) for row in gold]
    uncheckable = sum(p == -1 for p in pred)
    return {**first_error_f1([first_error(row) for row in gold], pred), "uncheckable": uncheckable}


def step_accuracy(gold: list[list[bool | None]], scores: list[list[float]], threshold: float) -> float:
    """Fraction of checkable steps whose thresholded score agrees with the gold label."""
    hits = total = 0
    for g_row, s_row in zip(gold, scores, strict=True):
        for g, s in zip(g_row, s_row, strict=False):
            if g is None:
                continue
            total += 1
            hits += (s >= threshold) == g
    return hits / total if total else 0.0
