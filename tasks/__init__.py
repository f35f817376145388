"""Task packs, installed as `reasoner.tasks`: one module per pack, registered by name.

A pack knows its problems, its prompt, how to split a solution into steps, which extractor and
verifier judge its answers, and (where it can) the gold correctness of any model step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from reasoner.errors import UserError
from reasoner.records import Problem
from reasoner.registry import Registry


class PackError(UserError, ValueError):
    """A pack that cannot load what was asked (unknown pack, missing source, bad split)."""


class Pack(Protocol):
    name: str
    extractor: str  # name in reasoner.verifiers.EXTRACTORS (config may override)
    verifier: str  # name in reasoner.verifiers.VERIFIERS
    step_separator: str  # what joins steps back into a solution ("\n" or "\n\n")

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        """``n`` problems of ``split`` (train or test); the test split ignores ``seed``."""

    def messages(self, problem: Problem) -> list[dict[str, str]]:
        """Chat messages that ask the problem (the pack's prompt style)."""

    def split_steps(self, text: str) -> list[str]:
        """Reasoning steps of a solution text."""

    def is_final(self, step: str) -> bool:
        """Whether a step states the final answer (tree search ends a solution there)."""

    def check_steps(self, problem: Problem, steps: list[str]) -> list[bool | None] | None:
        """Gold correctness of each step (None: the step makes no checkable claim), or None
        when the pack has no gold step labels."""


PACKS: Registry[Callable[..., Pack]] = Registry("task pack", PackError)
register = PACKS.register


def get_pack(name: str, **options: Any) -> Pack:
    """Build pack ``name`` with its options (source, prompt style, difficulty)."""
    return PACKS.lookup(name)(**options)


PROMPTS = ("fewshot", "zeroshot")
SHOTS = 4  # worked examples a few-shot prompt shows


def check_prompt(pack: str, prompt: str) -> str:
    if prompt not in PROMPTS:
        raise PackError(f"{pack} prompt must be one of {', '.join(PROMPTS)}, got {prompt!r} (task.prompt)")
    return prompt


def states_answer(step: str) -> bool:
    """The answer phrases every pack's prompt asks for: "The answer is N" or \\boxed{N}."""
    return "answer is" in step.lower() or "boxed" in step


def worked_examples(pack: Any) -> list[tuple[str, str]]:
    """A few-shot prompt's examples: the first `SHOTS` problems of the pack's train split (in file
    order, not shuffled) with ``pack.worked(problem)``; none for a zero-shot prompt. Cached."""
    if pack.prompt != "fewshot":
        return []
    if getattr(pack, "_shots", None) is None:
        pack._shots = [(p.question, pack.worked(p)) for p in pack.problems("train", SHOTS, 0, shuffle=False)]
    return pack._shots


def chat(system: str, examples: list[tuple[str, str]], question: str) -> list[dict[str, str]]:
    """System instructions, worked examples as earlier turns, then the question."""
    msgs = [{"role": "system", "content": system}]
    for q, a in examples:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return msgs + [{"role": "user", "content": question}]


def render(messages: list[dict[str, str]], tokenizer) -> str:
    """Prompt text for a model: its chat template when it has one, else plain turns."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    parts = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join(parts) + "\nassistant: "


from reasoner.tasks import arith as _arith  # noqa: E402,F401
from reasoner.tasks import gsm8k as _gsm8k  # noqa: E402,F401
from reasoner.tasks import math as _math  # noqa: E402,F401
