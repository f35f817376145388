"""CREAM's consistency-regularised preference loss (Wang et al., "CREAM: Consistency Regularized
Self-Rewarding Language Models", arXiv 2410.12735), as pure functions.

Each prompt's samples are ranked by the current and by the previous iteration's reward model;
their agreement, Kendall's tau mapped to C = (tau + 1) / 2, weighs the DPO loss of the pair the
current model prefers against the same loss with the pair reversed:
C * L(y+, y-) + (1 - C) * L(y-, y+). Where the two reward models disagree (C near 1/2) the
preference is softened towards no preference at all.

Ties are handled as the paper's code does, with Kendall's tau-b (scipy.stats.kendalltau's
default): tau_b = (n_c - n_d) / sqrt((n_0 - n_1)(n_0 - n_2)), n_0 = n(n - 1) / 2 pairs, n_1 and
n_2 the pairs tied in the first and in the second ranking. A ranking with every sample tied has
no order to agree with: tau is undefined there (scipy returns nan) and `consistency` says None.
Not yet reached by a recipe: `configs/cream.toml` and its phases are still to come.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from reasoner.training.objectives.dpo import dpo_loss


def kendall_tau_b(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Kendall's tau-b between two scorings of the same items (ties in either corrected for);
    None when either scoring ties every pair (or there are fewer than 2 items)."""
    if len(a) != len(b):
        raise ValueError(f"two scorings of the same items, got {len(a)} and {len(b)} scores")
    concordant = discordant = tied_a = tied_b = 0
    n = len(a)
    for i in range(n):
        for j in range(i + 1, n):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0:
                tied_a += 1
            if db == 0:
                tied_b += 1
            if da * db > 0:
                concordant += 1
            elif da * db < 0:
                discordant += 1
    pairs = n * (n - 1) // 2
    denom = math.sqrt((pairs - tied_a) * (pairs - tied_b))
    if denom == 0:
        return None
    return (concordant - discordant) / denom


def consistency(current: Sequence[float], previous: Sequence[float]) -> float | None:
    """CREAM's consistency rate of one prompt's rankings: (tau_b + 1) / 2 in [0, 1]; None when
    tau is undefined."""
    tau = kendall_tau_b(current, previous)
    return None if tau is None else (tau + 1.0) / 2.0


def cream_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    consistency_rate: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """CREAM's regularised DPO loss per pair.

    Args:
        policy_chosen, policy_rejected, ref_chosen, ref_rejected: (B,) summed log-probabilities of
            each pair's chosen (ranked first by the current reward) and rejected completion under
            the policy and the reference.
        consistency_rate: (B,) C of the pair's prompt, in [0, 1].
        beta: DPO's strength of the implicit KL constraint.
    Returns:
        (B,) C * L(y+, y-) + (1 - C) * L(y-, y+), L being DPO's -log sigmoid(beta * margin).
    """
    forward, _ = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    backward, _ = dpo_loss(policy_rejected, policy_chosen, ref_rejected, ref_chosen, beta)
    return consistency_rate * forward + (1.0 - consistency_rate) * backward
