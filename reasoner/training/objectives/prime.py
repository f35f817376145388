"""`prime`: PRIME RL (Cui et al., "Process Reinforcement through Implicit Rewards", arXiv
2502.01456). One example is one prompt with its K verified samples. Each step, on the same
batch, first the implicit PRM phi is updated online with its cross-entropy on the outcome labels
(`implicit_prm_loss`); then the policy with a PPO-clipped loss whose advantages combine, per
token, the return of phi's process rewards minus a leave-one-out baseline, and the outcome
reward minus its own leave-one-out baseline (RLOO), as PRIME computes them:

    A_t^i = sum_{s >= t} gamma^(s-t) [ r_phi(y_s^i) - 1/(K-1) sum_{j != i} R_phi(y^j) / |y^j| ]
            + r_o(y^i) - 1/(K-1) sum_{j != i} r_o(y^j)

with r_phi(y_s) = beta * (log pi_phi(y_s) - log pi_ref(y_s)) and R_phi(y) its sum over y.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from reasoner.logprobs import completion_logprobs
from reasoner.training.objectives import register
from reasoner.training.objectives.implicit_prm import ImplicitPRM, PRMExample


def prime_advantages(
    token_rewards: torch.Tensor, mask: torch.Tensor, outcome: torch.Tensor, gamma: float = 1.0
) -> torch.Tensor:
    """PRIME's advantages for one prompt's K samples (see the module docstring).

    Args:
        token_rewards: (K, L) implicit process reward of each token. mask: (K, L) 1 on real
            tokens. outcome: (K,) verifier rewards (1 correct, 0 not). K >= 2.
    Returns:
        (K, L) advantages, 0 on padding.
    """
    k = token_rewards.shape[0]
    per_token = (token_rewards * mask).sum(-1) / mask.sum(-1).clamp(min=1)  # (K,) R_phi / |y|
    baseline = (per_token.sum() - per_token) / (k - 1)  # (K,) leave-one-out
    shaped = (token_rewards - baseline[:, None]) * mask
    returns = torch.zeros_like(shaped)
    running = torch.zeros(k, dtype=shaped.dtype, device=shaped.device)
    for t in range(shaped.shape[1] - 1, -1, -1):
        running = shaped[:, t] + gamma * running * mask[:, t]
        returns[:, t] = running
    outcome_adv = outcome - (outcome.sum() - outcome) / (k - 1)
    return (returns + outcome_adv[:, None]) * mask


def ppo_clip_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip: float
) -> torch.Tensor:
    """PPO's clipped surrogate (Schulman et al., arXiv 1707.06347), summed over tokens.

    Args:
        logp, old_logp: (B, L) token log-probs under the policy now and when it sampled.
        advantages: (B, L). mask: (B, L). clip: epsilon.
    Returns:
        scalar: -sum mask * min(ratio * A, clip(ratio, 1-eps, 1+eps) * A).
    """
    ratio = torch.exp(logp - old_logp)
    surrogate = torch.minimum(ratio * advantages, torch.clamp(ratio, 1 - clip, 1 + clip) * advantages)
    return -(surrogate * mask).sum()


@dataclass(frozen=True)
class Group:
    """One prompt and its K samples, with what the step needs precomputed once."""

    prompt_ids: list[int]
    completions: list[list[int]]
    outcomes: list[float]  # verifier rewards
    ref_logprobs: list[list[float]]  # frozen reference, per token (the implicit PRM's pi_ref)
    old_logprobs: list[list[float]]  # the policy that sampled them, per token
    advantages: tuple[tuple[float, ...], ...] = ()  # filled by `prepare` before the policy update


class _PolicyView:
    name = "prime-policy"

    def __init__(self, clip: float):
        self.clip = clip

    def units(self, batch: list[Group]) -> int:
        return sum(len(c) for g in batch for c in g.completions)

    def loss(self, model, batch: list[Group], pad_id: int, device):
        prompts = [g.prompt_ids for g in batch for _ in g.completions]
        completions = [c for g in batch for c in g.completions]
        logp, mask = completion_logprobs(model, prompts, completions, pad_id, device)
        old, adv = torch.zeros_like(logp), torch.zeros_like(logp)
        row = 0
        for g in batch:
            for old_lp, a in zip(g.old_logprobs, g.advantages, strict=True):
                old[row, : len(old_lp)] = torch.tensor(old_lp, device=old.device)
                adv[row, : len(a)] = torch.tensor(a, device=adv.device)
                row += 1
        loss = ppo_clip_loss(logp, old, adv, mask, self.clip)
        return loss, int(mask.sum()), {"advantage_abs_sum": float((adv.abs() * mask).sum())}


class _RewardView:
    name = "prime-reward"

    def __init__(self, beta: float):
        self.inner = ImplicitPRM(beta)

    def _flat(self, batch: list[Group]) -> list[PRMExample]:
        return [
            PRMExample(g.prompt_ids, c, ref, label)
            for g in batch
            for c, ref, label in zip(g.completions, g.ref_logprobs, g.outcomes, strict=True)
        ]

    def units(self, batch: list[Group]) -> int:
        return self.inner.units(self._flat(batch))

    def loss(self, model, batch: list[Group], pad_id: int, device):
        return self.inner.loss(model, self._flat(batch), pad_id, device)


@register("prime")
class PRIME:
    name = "prime"
    roles = ("reward", "policy")  # the PRM first, then the policy with the updated PRM's rewards

    def __init__(self, beta: float = 0.05, clip: float = 0.2, gamma: float = 1.0, **_options: object):
        self.beta, self.gamma = beta, gamma
        self.views = {"reward": _RewardView(beta), "policy": _PolicyView(clip)}

    def for_role(self, role: str):
        return self.views[role]

    @torch.no_grad()
    def prepare(self, role: str, batch: list[Group], engines) -> list[Group]:
        """Before the policy's update: the process rewards of the just-updated PRM, then the
        advantages of every sample of every group."""
        if role != "policy":
            return batch
        out = []
        for g in batch:
            lp, mask = engines["reward"].score([g.prompt_ids] * len(g.completions), g.completions)
            ref = torch.zeros_like(lp)
            for i, r in enumerate(g.ref_logprobs):
                ref[i, : len(r)] = torch.tensor(r, device=ref.device)
            token_rewards = self.beta * (lp - ref) * mask
            outcome = torch.tensor(g.outcomes, device=lp.device)
            adv = prime_advantages(token_rewards, mask, outcome, self.gamma)
            rows = tuple(tuple(adv[i, : len(c)].tolist()) for i, c in enumerate(g.completions))
            out.append(replace(g, advantages=rows))
        return out
