"""Monte-Carlo step labels (Math-Shepherd; Wang et al., arXiv 2312.08935).

From the prefix ending at step t, N completions are sampled from the policy and verified; the
hard label is 1 when any completion is correct, the soft label the fraction correct.
"""

from __future__ import annotations


def labels_from_counts(correct: list[int], n: int) -> tuple[list[float], list[float]]:
    """Hard and soft labels from per-step counts of correct completions out of ``n``."""
    if n <= 0:
        raise ValueError("MC estimation needs at least one completion per step")
    hard = [1.0 if c > 0 else 0.0 for c in correct]
    soft = [c / n for c in correct]
    return hard, soft
