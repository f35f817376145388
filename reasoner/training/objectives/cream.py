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

The objective `cream` (recipe `cream`, `configs/cream.toml`) takes each prompt's samples ranked by
the current reward (`options["current"]`: the label phase's scores, by `reward@k-1`) and by the
previous one (`options["previous"]`: the same labeller with `reward@k-2`); y+ is the sample the
current reward ranks first and y- the one it ranks last, the verifier breaking ties (an
untrained implicit PRM scores every sample 0, and then the verifier's order decides). Where tau
is undefined (a reward that ties every sample) C = 1: the ranking used is the current one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from reasoner.records import Trajectory
from reasoner.training.objectives import register
from reasoner.training.objectives.data import RolloutData
from reasoner.training.objectives.dpo import DPOExample, dpo_loss, pair_logprobs, with_reference


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


@dataclass(frozen=True)
class CREAMExample(DPOExample):
    consistency: float = 1.0  # C of the pair's prompt


def ranked_pairs(
    trajectories: list[Trajectory], current: dict[str, float], previous: dict[str, float]
) -> list[tuple[Trajectory, Trajectory, float]]:
    """(y+, y-, C) per prompt: the samples the current reward ranks first and last (ties broken by
    the verifier, then by id), distinct texts only, and the prompt's consistency rate (1 where
    tau is undefined). A prompt whose best and worst rank equal gives no pair."""
    groups: dict[str, dict[str, Trajectory]] = {}
    for t in sorted(trajectories, key=lambda t: t.id):
        if t.id in current and t.text.strip():
            groups.setdefault(t.problem_id, {}).setdefault(t.text.strip(), t)
    out = []
    for pid in sorted(groups):
        group = list(groups[pid].values())
        if len(group) < 2:
            continue

        def key(t: Trajectory) -> tuple[float, int]:
            return current[t.id], 1 if t.correct else 0

        ranked = sorted(group, key=key)
        best, worst = ranked[-1], ranked[0]
        if key(best) == key(worst):
            continue
        c = consistency([current[t.id] for t in group], [previous.get(t.id, 0.0) for t in group])
        out.append((best, worst, 1.0 if c is None else c))
    return out


@register("cream")
class CREAM:
    """Consistency-regularised DPO over reward-ranked pairs (see the module docstring)."""

    name = "cream"
    roles = ("policy",)
    rankings = ("current", "previous")  # the train phase supplies both rewards' scores

    def __init__(self, beta: float = 0.1):
        self.beta = beta

    def from_rollouts(self, data: RolloutData) -> list[CREAMExample]:
        eos = data.tokenizer.eos_token or ""
        ranked = ranked_pairs(data.trajectories, data.options["current"], data.options["previous"])
        # C rides through with_reference in the weight's place; each pair then weighs 1
        raw = [(good.prompt, good.text + eos, bad.text + eos, c, "cream") for good, bad, c in ranked]
        return [
            CREAMExample(
                e.prompt_ids,
                e.chosen_ids,
                e.rejected_ids,
                e.ref_chosen,
                e.ref_rejected,
                kind=e.kind,
                consistency=e.weight,
            )
            for e in with_reference(data, raw)
        ]

    def units(self, batch: list[CREAMExample]) -> int:
        return len(batch)

    def loss(self, model, batch: list[CREAMExample], pad_id: int, device):
        chosen, rejected, ref_c, ref_r, _ = pair_logprobs(model, batch, pad_id, device)
        c = torch.tensor([e.consistency for e in batch], device=chosen.device)
        losses = cream_loss(chosen, rejected, ref_c, ref_r, c, self.beta)
        margin = (chosen - ref_c) - (rejected - ref_r)
        return (
            losses.sum(),
            len(batch),
            {"consistency_sum": float(c.sum()), "pair_accuracy_sum": float((margin > 0).float().sum())},
        )
