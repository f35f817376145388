"""`implicit_prm`: train the implicit PRM (PRIME, arXiv 2412.01981) with cross-entropy on outcome
labels. The reward of a response is r = beta * sum_t [log pi_phi(y_t) - log pi_ref(y_t)]; the
reference log-probabilities are computed once, before training, and travel with the example."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reasoner.logprobs import completion_logprobs
from reasoner.rewards.implicit import outcome_loss
from reasoner.training.objectives import register


@dataclass(frozen=True)
class PRMExample:
    prompt_ids: list[int]
    completion_ids: list[int]
    ref_logprobs: list[float]  # one per completion token
    label: float  # 1.0 correct, 0.0 incorrect


def implicit_prm_loss(
    logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the implicit PRM's outcome reward against outcome labels (PRIME, arXiv
    2502.01456; "Free Process Rewards without Process Labels", arXiv 2412.01981).

    Args:
        logp, ref_logp: (B, L) token log-probabilities under phi and the frozen reference.
        mask: (B, L) 1 on real tokens. labels: (B,) 1.0 correct, 0.0 incorrect.
    Returns:
        the summed loss over the batch (scalar) and the outcome rewards r (B,), where
        r = beta * sum_t mask * (logp - ref_logp) and loss = -[l log s(r) + (1-l) log(1-s(r))].
    """
    outcome = beta * ((logp - ref_logp) * mask).sum(-1)
    return outcome_loss(outcome, labels) * outcome.shape[0], outcome


@register("implicit_prm")
class ImplicitPRM:
    name = "implicit_prm"
    roles = ("reward",)

    def __init__(self, beta: float = 0.05):
        self.beta = beta

    def units(self, batch: list[PRMExample]) -> int:
        return len(batch)

    def loss(self, model, batch: list[PRMExample], pad_id: int, device):
        logp, mask = completion_logprobs(
            model, [e.prompt_ids for e in batch], [e.completion_ids for e in batch], pad_id, device
        )
        ref = torch.zeros_like(logp)
        for row, e in enumerate(batch):
            ref[row, : len(e.ref_logprobs)] = torch.tensor(e.ref_logprobs, device=ref.device)
        labels = torch.tensor([e.label for e in batch], device=logp.device)
        # outcome_loss is a mean; the engine divides by the units (sequences) of the whole step.
        loss, outcome = implicit_prm_loss(logp, ref, mask, labels, self.beta)
        accuracy = float(((outcome > 0).float() == labels).float().sum())
        return loss, len(batch), {"reward_accuracy_sum": accuracy}
