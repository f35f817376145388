"""Implicit process rewards (PRIME; Yuan et al., "Free Process Rewards without Process Labels",
arXiv 2412.01981, and Cui et al., "Process Reinforcement through Implicit Rewards", arXiv
2502.01456).

The reward model is a causal LM pi_phi beside a frozen reference pi_ref. Token reward
r_t = beta * (log pi_phi(y_t | y_<t) - log pi_ref(y_t | y_<t)); a step's reward is the sum over
its tokens and the outcome reward the sum over all. Trained with cross-entropy on outcome labels
only: L = -[l log sigma(r) + (1 - l) log(1 - sigma(r))], r the outcome reward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reasoner.records import StepLabels, Trajectory
from reasoner.rewards import LabelContext, register
from reasoner.steps import step_token_ends


def token_rewards(policy_logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, beta: float) -> torch.Tensor:
    """beta * (log pi_phi - log pi_ref) per token.

    Args:
        policy_logp: (B, T) reward-model log-probabilities of the response tokens.
        ref_logp: (B, T) reference log-probabilities of the same tokens.
        mask: (B, T) 1 on response tokens.
    Returns:
        (B, T) token rewards, 0 on padding.
    """
    return beta * (policy_logp - ref_logp) * mask


def step_rewards(tokens: torch.Tensor, step_ends: list[list[int]]) -> list[list[float]]:
    """Sum token rewards within each step.

    Args:
        tokens: (B, T) token rewards.
        step_ends: per row, the end offset (exclusive) of each step in response tokens.
    Returns:
        per row, one float per step.
    """
    out = []
    cums = torch.cumsum(tokens, dim=-1)
    for row, ends in enumerate(step_ends):
        sums, prev = [], 0.0
        for end in ends:
            total = float(cums[row, end - 1]) if end > 0 else 0.0
            sums.append(total - prev)
            prev = total
        out.append(sums)
    return out


def outcome_loss(outcome: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the implicit outcome reward against 0/1 outcome labels.

    Args:
        outcome: (B,) summed token rewards r.
        labels: (B,) 1.0 for a correct trajectory, 0.0 otherwise.
    Returns:
        scalar mean of -[l log sigma(r) + (1 - l) log(1 - sigma(r))].
    """
    return F.binary_cross_entropy_with_logits(outcome, labels.float())


@register("implicit")
class ImplicitLabeller:
    """Step rewards from one scoring pass of the reward model and one of the reference."""

    name = "implicit"
    threshold = 0.0  # a step whose summed log-ratio is negative is predicted wrong
    role = "reward"
    targets_from = None
    variants: dict[str, tuple[str, float]] = {}

    def search_scores(self, trajectories: list[Trajectory], ctx: LabelContext, seed: int) -> list[float]:
        """Q value of each partial solution: its summed implicit step rewards (a logit)."""
        return [sum(r) for r in score_steps(trajectories, ctx)]

    def label(self, trajectories: list[Trajectory], ctx: LabelContext) -> list[StepLabels]:
        rewards = score_steps(trajectories, ctx)
        return [
            StepLabels(t.id, self.name, r, meta={"outcome": float(sum(r)), "beta": ctx.settings.implicit_beta})
            for t, r in zip(trajectories, rewards, strict=True)
        ]


def score_steps(trajectories: list[Trajectory], ctx: LabelContext) -> list[list[float]]:
    """Implicit step rewards of each trajectory (one forward of phi and one of the reference;
    none at all while phi is still the reference, where every reward is exactly 0)."""
    phi = ctx.backend_for(ctx.reward_spec)
    tok = phi.tokenizer
    pairs = [
        (tok(t.prompt, add_special_tokens=False)["input_ids"], tok(t.text, add_special_tokens=False)["input_ids"])
        for t in trajectories
    ]
    ends = [step_token_ends(c, t.steps, tok) for (_, c), t in zip(pairs, trajectories, strict=True)]
    if ctx.reward_spec == ctx.reference_spec:
        return [[0.0] * len(t.steps) for t in trajectories]
    ref = ctx.backend_for(ctx.reference_spec)
    lp_phi, lp_ref = phi.score_ids(pairs), ref.score_ids(pairs)
    out = []
    for a, b, e in zip(lp_phi, lp_ref, ends, strict=True):
        a_t, b_t = torch.tensor([a]), torch.tensor([b])
        tokens = token_rewards(a_t, b_t, torch.ones_like(a_t), ctx.settings.implicit_beta)
        out.append(step_rewards(tokens, [e])[0] if a else [0.0] * len(e))
    return out
