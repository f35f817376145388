"""`implicit_prm`: train the implicit PRM (PRIME, arXiv 2412.01981) with cross-entropy on outcome
labels. The reward of a response is r = beta * sum_t [log pi_phi(y_t) - log pi_ref(y_t)]; the
reference log-probabilities are computed once, before training, and travel with the example."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reasoner.rewards.implicit import outcome_loss
from reasoner.training.objectives import register
from reasoner.training.tensors import pad_right, token_logprobs


@dataclass(frozen=True)
class PRMExample:
    prompt_ids: list[int]
    completion_ids: list[int]
    ref_logprobs: list[float]  # one per completion token
    label: float  # 1.0 correct, 0.0 incorrect


@register("implicit_prm")
class ImplicitPRM:
    name = "implicit_prm"

    def __init__(self, beta: float = 0.05):
        self.beta = beta

    def units(self, batch: list[PRMExample]) -> int:
        return len(batch)

    def loss(self, model, batch: list[PRMExample], pad_id: int, device):
        seqs = [e.prompt_ids + e.completion_ids for e in batch]
        ids, mask = pad_right(seqs, pad_id, device)
        logp = token_logprobs(model(input_ids=ids, attention_mask=mask).logits, ids)  # (B, T-1)
        rewards = []
        for row, e in enumerate(batch):
            start = len(e.prompt_ids) - 1
            lp = logp[row, start : start + len(e.completion_ids)]
            ref = torch.tensor(e.ref_logprobs, device=lp.device)
            rewards.append(self.beta * (lp - ref).sum())
        outcome = torch.stack(rewards)
        labels = torch.tensor([e.label for e in batch], device=outcome.device)
        # outcome_loss is a mean; the engine divides by the units (sequences) of the whole step.
        loss = outcome_loss(outcome, labels) * len(batch)
        accuracy = float(((outcome > 0).float() == labels).float().sum())
        return loss, len(batch), {"reward_accuracy_sum": accuracy}
