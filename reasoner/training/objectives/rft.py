"""`rft`: rejection-sampling fine-tuning (RFT / STaR): supervised fine-tuning on the policy's
own verified-correct samples. Loss: mean negative log-likelihood of the completion tokens over
all completion tokens of the optimizer step (prompt tokens are not trained)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from reasoner.logprobs import completion_logprobs, token_logprobs
from reasoner.records import Trajectory
from reasoner.tools import given_token_spans
from reasoner.training.objectives import register
from reasoner.training.objectives.data import RolloutData


@dataclass(frozen=True)
class SFTExample:
    prompt_ids: list[int]
    completion_ids: list[int]
    source_id: str
    given: tuple[tuple[int, int], ...] = ()  # completion token spans not trained: tool output


def nll_sum(logits: torch.Tensor, ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Summed negative log-likelihood of the masked next tokens, from full logits (reference).

    Args:
        logits: (B, T, V). ids: (B, T). loss_mask: (B, T), 1 where token t is trained.
    Returns:
        scalar: -sum_t mask[t] * log p(ids[t] | ids[<t]).
    """
    logp = token_logprobs(logits, ids)  # (B, T-1), predicts ids[:, 1:]
    return -(logp * loss_mask[:, 1:]).sum()


def sft_loss(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Supervised fine-tuning on own correct samples (STaR, arXiv 2203.14465; RFT, arXiv
    2308.01825): summed negative log-likelihood of the completion tokens.

    Args:
        logp: (B, L) log-probabilities of the completion tokens. mask: (B, L), 1 on real tokens.
    Returns:
        scalar: -sum(mask * logp) (the engine divides by the tokens of the whole step).
    """
    return -(logp * mask).sum()


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
    roles = ("policy",)

    def __init__(self, **_options: object):  # policy objectives share their options (DPO's beta)
        pass

    def from_rollouts(self, data: RolloutData) -> list[SFTExample]:
        """The policy's examples from verified rollouts: `select`, then tokenize."""
        kept = select(
            data.trajectories, require_steps=data.require_steps, max_per_problem=data.max_per_problem, seed=data.seed
        )
        return self.examples(kept, data.tokenizer, data.tokenizer.eos_token or "")

    def examples(self, trajectories: list[Trajectory], tokenizer, eos: str) -> list[SFTExample]:
        out = []
        for t in trajectories:
            prompt = tokenizer(t.prompt, add_special_tokens=False)["input_ids"]
            completion = tokenizer(t.text + eos, add_special_tokens=False)["input_ids"]
            given = tuple(given_token_spans(t.text, tokenizer)) if t.meta.get("executions") else ()
            out.append(SFTExample(prompt, completion, t.id, given))
        return out

    def units(self, batch: list[SFTExample]) -> int:
        # other objectives' examples (PRM, SPARK) reuse this count; only SFTExample has `given`
        return sum(len(e.completion_ids) - sum(b - a for a, b in getattr(e, "given", ())) for e in batch)

    def loss(self, model, batch: list[SFTExample], pad_id: int, device):
        logp, mask = completion_logprobs(
            model, [e.prompt_ids for e in batch], [e.completion_ids for e in batch], pad_id, device
        )
        for row, e in enumerate(batch):
            for a, b in getattr(e, "given", ()):  # what the sandbox wrote is context, not a target
                mask[row, a:b] = 0.0
        return sft_loss(logp, mask), int(mask.sum()), {"tokens": float(mask.sum())}
