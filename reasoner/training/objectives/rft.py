"""`rft`: rejection-sampling fine-tuning (RFT / STaR): supervised fine-tuning on the policy's
own verified-correct samples. Loss: mean negative log-likelihood of the completion tokens over
all completion tokens of the optimizer step (prompt tokens are not trained)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from reasoner.records import Trajectory
from reasoner.training.objectives import register
from reasoner.training.tensors import pad_right, token_logprobs


@dataclass(frozen=True)
class SFTExample:
    prompt_ids: list[int]
    completion_ids: list[int]
    source_id: str


def nll_sum(logits: torch.Tensor, ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Summed negative log-likelihood of the masked next tokens.

    Args:
        logits: (B, T, V). ids: (B, T). loss_mask: (B, T), 1 where token t is trained.
    Returns:
        scalar: -sum_t mask[t] * log p(ids[t] | ids[<t]).
    """
    logp = token_logprobs(logits, ids)  # (B, T-1), predicts ids[:, 1:]
    return -(logp * loss_mask[:, 1:]).sum()


def select(trajectories: list[Trajectory], *, require_steps: bool, max_per_problem: int, seed: int) -> list[Trajectory]:
    """Correct samples (and, with ``require_steps``, no step labelled wrong by the pack's gold
    step check), distinct by text, at most ``max_per_problem`` per problem, in a seeded order."""
    by_problem: dict[str, list[Trajectory]] = {}
    seen: set[tuple[str, str]] = set()
    for t in trajectories:
        if not t.correct:
            continue
        if require_steps and False in (t.meta.get("gold_steps") or []):
            continue
        key = (t.problem_id, t.text.strip())
        if key in seen:
            continue
        seen.add(key)
        by_problem.setdefault(t.problem_id, []).append(t)
    rng = random.Random(seed)
    kept = []
    for pid in sorted(by_problem):
        group = by_problem[pid]
        rng.shuffle(group)
        kept.extend(group[:max_per_problem])
    rng.shuffle(kept)
    return kept


@register("rft")
class RFT:
    name = "rft"

    def examples(self, trajectories: list[Trajectory], tokenizer, eos: str) -> list[SFTExample]:
        out = []
        for t in trajectories:
            prompt = tokenizer(t.prompt, add_special_tokens=False)["input_ids"]
            completion = tokenizer(t.text + eos, add_special_tokens=False)["input_ids"]
            out.append(SFTExample(prompt, completion, t.id))
        return out

    def units(self, batch: list[SFTExample]) -> int:
        return sum(len(e.completion_ids) for e in batch)

    def loss(self, model, batch: list[SFTExample], pad_id: int, device):
        seqs = [e.prompt_ids + e.completion_ids for e in batch]
        ids, mask = pad_right(seqs, pad_id, device)
        loss_mask = torch.zeros_like(mask)
        for row, e in enumerate(batch):
            loss_mask[row, len(e.prompt_ids) : len(e.prompt_ids) + len(e.completion_ids)] = 1
        logits = model(input_ids=ids, attention_mask=mask).logits
        total = nll_sum(logits, ids, loss_mask)
        return total, int(loss_mask.sum()), {"tokens": float(loss_mask.sum())}
