"""`dpo`: Direct Preference Optimization (Rafailov et al., arXiv 2305.18290) on the policy's own
samples. Pairs are (a) outcome pairs: a verified-correct and an incorrect sample of one problem;
(b) step pairs from tree search (`pairs.jsonl`): two sibling steps after a shared prefix, the
one with the higher Q value chosen, as in Step-DPO (Lai et al., arXiv 2406.18629), where the
shared prefix joins the prompt and only the differing steps are compared. Reference
log-probabilities are computed once per pair, before training, by the model the iteration
starts from.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reasoner.logprobs import completion_logprobs
from reasoner.records import Trajectory
from reasoner.training.objectives import register
from reasoner.training.objectives.data import RolloutData

PAIR_KINDS = ("outcome", "step")


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DPO's loss per pair.

    Args:
        policy_chosen, policy_rejected, ref_chosen, ref_rejected: (B,) summed log-probabilities
            of each pair's chosen and rejected completion under the policy and the reference.
        beta: strength of the implicit KL constraint.
    Returns:
        losses (B,) = -log sigmoid(beta * margin) and margins (B,) =
        (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected).
    """
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin), margin


def rpo_loss(
    dpo_losses: torch.Tensor, policy_chosen: torch.Tensor, chosen_tokens: torch.Tensor, alpha: float
) -> torch.Tensor:
    """Iterative RPO's loss per pair (Pang et al., arXiv 2404.19733): DPO's plus ``alpha`` times the
    chosen completion's negative log-likelihood per token, which keeps DPO from lowering the
    chosen sample's likelihood along with the rejected one's.

    Args:
        dpo_losses: (B,) DPO's loss per pair (`dpo_loss`).
        policy_chosen: (B,) summed policy log-probabilities of the chosen completions.
        chosen_tokens: (B,) their token counts.
        alpha: the NLL's weight (0 gives DPO).
    Returns:
        (B,) dpo_losses - alpha * policy_chosen / chosen_tokens.
    """
    return dpo_losses - alpha * policy_chosen / chosen_tokens.clamp(min=1)


@dataclass(frozen=True)
class DPOExample:
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    ref_chosen: float  # summed reference log-prob of the chosen completion
    ref_rejected: float
    weight: float = 1.0
    kind: str = "outcome"


def outcome_pairs(
    trajectories: list[Trajectory], max_per_problem: int, seed: int
) -> list[tuple[Trajectory, Trajectory]]:
    """(correct, incorrect) samples of one problem, distinct texts, at most ``max_per_problem``
    pairs per problem, each sample in as few pairs as the counts allow, in a seeded order."""
    by_problem: dict[str, tuple[list[Trajectory], list[Trajectory]]] = {}
    seen: set[tuple[str, str]] = set()
    for t in trajectories:
        key = (t.problem_id, t.text.strip())
        if key in seen or t.correct is None or not t.text.strip():
            continue
        seen.add(key)
        good, bad = by_problem.setdefault(t.problem_id, ([], []))
        (good if t.correct else bad).append(t)
    rng = random.Random(seed)
    out = []
    for pid in sorted(by_problem):
        good, bad = by_problem[pid]
        if not good or not bad:
            continue
        rng.shuffle(good)
        rng.shuffle(bad)
        # diagonals first: good i with bad (i + d) mod |bad| for d = 0, 1, ... spreads the samples
        combos = sorted(
            ((g, b) for g in range(len(good)) for b in range(len(bad))), key=lambda c: ((c[1] - c[0]) % len(bad), c[0])
        )
        out += [(good[g], bad[b]) for g, b in combos[:max_per_problem]]
    rng.shuffle(out)
    return out


def split_shared(chosen: str, rejected: str, separator: str) -> tuple[str, str, str]:
    """(shared prefix, chosen rest, rejected rest), the prefix cut after the last step separator
    both texts share, so the two rests are the differing steps."""
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    cut = chosen.rfind(separator, 0, n)
    cut = cut + len(separator) if cut >= 0 and separator else 0
    return chosen[:cut], chosen[cut:], rejected[cut:]


def pair_logprobs(model, batch: list[DPOExample], pad_id: int, device) -> tuple[torch.Tensor, ...]:
    """(B,) summed log-probs of each pair's chosen and rejected completion under ``model``, the
    stored reference ones, and the chosen completions' token counts: one forward over both halves."""
    prompts = [e.prompt_ids for e in batch]
    both = completion_logprobs(
        model, prompts + prompts, [e.chosen_ids for e in batch] + [e.rejected_ids for e in batch], pad_id, device
    )
    summed = (both[0] * both[1]).sum(-1)
    chosen, rejected = summed[: len(batch)], summed[len(batch) :]
    ref_c = torch.tensor([e.ref_chosen for e in batch], device=chosen.device)
    ref_r = torch.tensor([e.ref_rejected for e in batch], device=chosen.device)
    return chosen, rejected, ref_c, ref_r, both[1][: len(batch)].sum(-1)


def with_reference(data: RolloutData, raw: list[tuple[str, str, str, float, str]]) -> list[DPOExample]:
    """Tokenise (prompt, chosen, rejected, weight, kind) pairs and score both completions once
    under the reference."""
    encoded = [(data.ids(p), data.ids(c), data.ids(r), w, k) for p, c, r, w, k in raw]
    encoded = [e for e in encoded if e[1] and e[2]]
    if not encoded:
        return []
    if data.reference is None:
        raise ValueError("dpo needs the reference model's log-probabilities (RolloutData.reference)")
    scores = data.reference([(p, c) for p, c, *_ in encoded] + [(p, r) for p, _, r, *_ in encoded])
    n = len(encoded)
    return [
        DPOExample(p, c, r, float(sum(scores[i])), float(sum(scores[n + i])), w, k)
        for i, (p, c, r, w, k) in enumerate(encoded)
    ]


@register("dpo")
class DPO:
    name = "dpo"
    roles = ("policy",)

    def __init__(self, beta: float = 0.1, nll: float = 0.0):
        self.beta = beta
        self.nll = nll  # Iterative RPO's weight of the chosen sample's NLL (`rpo_loss`)

    def from_rollouts(self, data: RolloutData) -> list[DPOExample]:
        kinds = data.options.get("pairs", PAIR_KINDS)
        eos = data.tokenizer.eos_token or ""
        raw: list[tuple[str, str, str, float, str]] = []  # prompt, chosen, rejected, weight, kind
        if "outcome" in kinds:
            for good, bad in outcome_pairs(data.trajectories, data.max_per_problem, data.seed):
                raw.append((good.prompt, good.text + eos, bad.text + eos, 1.0, "outcome"))
        if "step" in kinds and data.pairs:
            prompts = {t.problem_id: t.prompt for t in data.trajectories}
            for p in data.pairs:
                if p.problem_id not in prompts:
                    continue
                shared, a, b = split_shared(p.chosen, p.rejected, data.step_separator)
                if a and b:
                    raw.append((prompts[p.problem_id] + shared, a, b, p.weight, "step"))
        return with_reference(data, raw)

    def units(self, batch: list[DPOExample]) -> int:
        return len(batch)

    def loss(self, model, batch: list[DPOExample], pad_id: int, device):
        chosen, rejected, ref_c, ref_r, chosen_tokens = pair_logprobs(model, batch, pad_id, device)
        weights = torch.tensor([e.weight for e in batch], device=chosen.device)
        losses, margins = dpo_loss(chosen, rejected, ref_c, ref_r, self.beta)
        if self.nll:
            losses = rpo_loss(losses, chosen, chosen_tokens, self.nll)
        return (
            (losses * weights).sum(),
            len(batch),
            {
                "pair_accuracy_sum": float((margins > 0).float().sum()),
                "margin_sum": float(margins.detach().sum()),
                # the chosen samples' NLL per token: what RPO's term holds up (DPO alone lets it rise)
                "chosen_nll_sum": float((-chosen / chosen_tokens.clamp(min=1)).detach().sum()),
            },
        )
