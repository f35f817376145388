"""Mutual-Taught (Shi et al., "Mutual-Taught for Co-adapting Policy and Reward Models", arXiv
2506.06292): an EM loop in which the policy and its reward model teach each other.

- E-step, objective `mutual` (the `train` phase): DPO on each prompt's pair ranked by the current
  reward model (the label phase's implicit PRM scores by ``reward@k-1``), the verifier breaking
  ties, as CREAM ranks without its consistency weight.
- M-step, objective `mutual_rm` (the `mstep` phase): the implicit PRM learns from pairs of the
  policy's outputs before (the iteration's rollouts) and after the E-step (fresh samples of
  ``policy@k`` on the same problems): the after-output is preferred unless the verifier says
  otherwise (before correct, after wrong), with a Bradley-Terry loss on the implicit outcome
  rewards, plus the cross-entropy on the verifier's outcome labels of every sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reasoner.logprobs import completion_logprobs
from reasoner.records import Trajectory
from reasoner.training.objectives import register
from reasoner.training.objectives.cream import ranked_pairs
from reasoner.training.objectives.data import RolloutData
from reasoner.training.objectives.dpo import DPO, DPOExample, with_reference
from reasoner.training.objectives.implicit_prm import PRMExample, implicit_prm_loss


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Pairwise reward-model loss (Bradley-Terry; Ouyang et al. 2022, as Mutual-Taught's M-step
    uses it).

    Args:
        chosen, rejected: (B,) rewards of each pair's preferred and other response.
    Returns:
        (B,) -log sigmoid(chosen - rejected).
    """
    return -F.logsigmoid(chosen - rejected)


def before_after_pairs(before: list[Trajectory], after: list[Trajectory]) -> list[tuple[Trajectory, Trajectory]]:
    """(preferred, other) pairs of one problem's outputs before and after the E-step, matched in
    id order: the after-output is preferred unless the verifier says the before-output is right
    and the after-output wrong. Identical texts give no pair."""
    by_problem: dict[str, tuple[list[Trajectory], list[Trajectory]]] = {}
    for t in sorted(before, key=lambda t: t.id):
        by_problem.setdefault(t.problem_id, ([], []))[0].append(t)
    for t in sorted(after, key=lambda t: t.id):
        by_problem.setdefault(t.problem_id, ([], []))[1].append(t)
    out = []
    for pid in sorted(by_problem):
        olds, news = by_problem[pid]
        for old, new in zip(olds, news, strict=False):
            if old.text.strip() == new.text.strip() or not old.text.strip() or not new.text.strip():
                continue
            out.append((old, new) if old.correct and not new.correct else (new, old))
    return out


@register("mutual")
class MutualPolicy(DPO):
    """E-step: DPO on the pairs the current reward model ranks (verifier breaks ties)."""

    name = "mutual"
    rankings = ("current",)  # the train phase supplies the current reward's scores

    def from_rollouts(self, data: RolloutData) -> list[DPOExample]:
        eos = data.tokenizer.eos_token or ""
        ranked = ranked_pairs(data.trajectories, data.options["current"], {})
        return with_reference(data, [(g.prompt, g.text + eos, b.text + eos, 1.0, "ranked") for g, b, _ in ranked])


@dataclass(frozen=True)
class RMPair:
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    ref_chosen: list[float]  # reference log-prob of each chosen token
    ref_rejected: list[float]


@register("mutual_rm")
class MutualReward:
    """M-step: Bradley-Terry on before/after pairs plus cross-entropy on verifier labels, both on
    the implicit PRM's outcome reward r = beta * sum_t (log pi_phi - log pi_ref)."""

    name = "mutual_rm"
    roles = ("reward",)

    def __init__(self, beta: float = 0.05):
        self.beta = beta

    def units(self, batch: list) -> int:
        return len(batch)

    def _rewards(self, model, prompts, completions, refs, pad_id, device) -> torch.Tensor:
        logp, mask = completion_logprobs(model, prompts, completions, pad_id, device)
        ref = torch.zeros_like(logp)
        for row, r in enumerate(refs):
            ref[row, : len(r)] = torch.tensor(r, device=ref.device)
        return logp, ref, mask

    def loss(self, model, batch: list, pad_id: int, device):
        labelled = [e for e in batch if isinstance(e, PRMExample)]
        pairs = [e for e in batch if isinstance(e, RMPair)]
        total = torch.zeros((), device=device)
        metrics: dict[str, float] = {}
        if labelled:
            logp, ref, mask = self._rewards(
                model,
                [e.prompt_ids for e in labelled],
                [e.completion_ids for e in labelled],
                [e.ref_logprobs for e in labelled],
                pad_id,
                device,
            )
            labels = torch.tensor([e.label for e in labelled], device=logp.device)
            ce, outcome = implicit_prm_loss(logp, ref, mask, labels, self.beta)
            total = total + ce
            metrics["reward_accuracy_sum"] = float(((outcome > 0).float() == labels).float().sum())
        if pairs:
            prompts = [e.prompt_ids for e in pairs]
            logp, ref, mask = self._rewards(
                model,
                prompts + prompts,
                [e.chosen_ids for e in pairs] + [e.rejected_ids for e in pairs],
                [e.ref_chosen for e in pairs] + [e.ref_rejected for e in pairs],
                pad_id,
                device,
            )
            r = self.beta * ((logp - ref) * mask).sum(-1)
            chosen, rejected = r[: len(pairs)], r[len(pairs) :]
            total = total + bradley_terry_loss(chosen, rejected).sum()
            metrics["pair_accuracy_sum"] = float((chosen > rejected).float().sum())
        return total, len(batch), metrics
