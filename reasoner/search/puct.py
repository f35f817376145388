"""PUCT selection for MCTS (Silver et al. 2017, AlphaGo Zero; as in rStar-Math arXiv 2501.04519).

score(child) = Q(child) + c * P(child) * sqrt(N(parent)) / (1 + N(child)).
"""

from __future__ import annotations

import math

import torch


def puct_scores(q: torch.Tensor, n: torch.Tensor, p: torch.Tensor, n_parent: int, c: float) -> torch.Tensor:
    """PUCT score of each child.

    Args:
        q: (K,) mean values of the children (0 for unvisited).
        n: (K,) visit counts. p: (K,) priors. n_parent: visits of the parent. c: exploration constant.
    Returns:
        (K,) scores.
    """
    return q + c * p * math.sqrt(n_parent) / (1.0 + n)


def select(q: list[float], n: list[int], p: list[float], n_parent: int, c: float) -> int:
    """Index of the child to descend into (first on ties)."""
    scores = puct_scores(
        torch.tensor(q, dtype=torch.float64),
        torch.tensor(n, dtype=torch.float64),
        torch.tensor(p, dtype=torch.float64),
        n_parent,
        c,
    )
    return int(torch.argmax(scores))


def priors_from_logprobs(step_logprobs: list[float], lengths: list[int]) -> list[float]:
    """Priors over sibling steps: softmax of each step's mean token log-probability (length-
    normalised, so long steps are not penalised for their length)."""
    means = torch.tensor([lp / max(n, 1) for lp, n in zip(step_logprobs, lengths, strict=True)], dtype=torch.float64)
    return torch.softmax(means, dim=0).tolist()
