"""`judge_rl`: train the stepwise judge by RL (StepWiser, arXiv 2508.19229).

Each judged step has a group of sampled judgments; a judgment's reward is 1 when its verdict
matches the Monte-Carlo target of the step (from `reasoner.rewards.judge_rules`) and 0 otherwise.
Advantages use leave-one-out baselines within the group (RLOO; Ahmadian et al., arXiv
2402.14740): A_i = r_i - mean_{j != i} r_j. Loss: -sum_i A_i * log pi(judgment_i), normalised by
the judgment tokens of the step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reasoner.logprobs import completion_logprobs
from reasoner.training.objectives import register


def leave_one_out(rewards: torch.Tensor) -> torch.Tensor:
    """RLOO advantages.

    Args:
        rewards: (G, K) rewards of K samples in each of G groups (K >= 2).
    Returns:
        (G, K): r_i minus the mean of the other K-1 rewards of its group.
    """
    k = rewards.shape[-1]
    baseline = (rewards.sum(-1, keepdim=True) - rewards) / (k - 1)
    return rewards - baseline


@dataclass(frozen=True)
class JudgeExample:
    prompt_ids: list[int]
    judgment_ids: list[int]
    advantage: float


def policy_gradient_loss(logp: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """REINFORCE with given advantages (here RLOO's, as StepWiser trains its judge).

    Args:
        logp: (B, L) token log-probabilities of the sampled judgments. mask: (B, L).
        advantages: (B,) one advantage per judgment.
    Returns:
        scalar: -sum_b A_b * sum_t mask * logp (the engine divides by the judgment tokens).
    """
    return -(advantages * (logp * mask).sum(-1)).sum()


@register("judge_rl")
class JudgeRL:
    name = "judge_rl"
    roles = ("judge",)

    def units(self, batch: list[JudgeExample]) -> int:
        return sum(len(e.judgment_ids) for e in batch)

    def loss(self, model, batch: list[JudgeExample], pad_id: int, device):
        logp, mask = completion_logprobs(
            model, [e.prompt_ids for e in batch], [e.judgment_ids for e in batch], pad_id, device
        )
        advantages = torch.tensor([e.advantage for e in batch], device=logp.device)
        total = policy_gradient_loss(logp, mask, advantages)
        return total, self.units(batch), {"advantage_sum": float(sum(e.advantage for e in batch))}
