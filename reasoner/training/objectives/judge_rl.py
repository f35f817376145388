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

from reasoner.training.objectives import register
from reasoner.training.tensors import pad_right, token_logprobs


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


@register("judge_rl")
class JudgeRL:
    name = "judge_rl"

    def units(self, batch: list[JudgeExample]) -> int:
        return sum(len(e.judgment_ids) for e in batch)

    def loss(self, model, batch: list[JudgeExample], pad_id: int, device):
        seqs = [e.prompt_ids + e.judgment_ids for e in batch]
        ids, mask = pad_right(seqs, pad_id, device)
        logp = token_logprobs(model(input_ids=ids, attention_mask=mask).logits, ids)
        total = logp.new_zeros(())
        for row, e in enumerate(batch):
            start = len(e.prompt_ids) - 1
            total = total - e.advantage * logp[row, start : start + len(e.judgment_ids)].sum()
        return total, self.units(batch), {"advantage_sum": float(sum(e.advantage for e in batch))}
