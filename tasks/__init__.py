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

    def check_steps(self, problem: Problem, steps: list[str]) -> list[bool | None] | None:
        """Gold correctness of each step (None: the step makes no checkable claim), or None
        when the pack has no gold step labels."""


PACKS: Registry[Callable[..., Pack]] = Registry("task pack", PackError)
register = PACKS.register


def get_pack(name: str, **options: Any) -> Pack:
    """Build pack ``name`` with its options (source, prompt style, difficulty)."""
    return PACKS.lookup(name)(**options)


def render(messages: list[dict[str, str]], tokenizer) -> str:
    """Prompt text for a model: its chat template when it has one, else plain turns."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    parts = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join(parts) + "\nassistant: "


from reasoner.tasks import arith as _arith  # noqa: E402,F401
from reasoner.tasks import gsm8k as _gsm8k  # noqa: E402,F401
from reasoner.tasks import math as _math  # noqa: E402,F401
