"""Task packs, installed as `reasoner.tasks`: one module per pack, registered by name.

A pack knows its problems, its prompt, how to split a solution into steps, which extractor and
verifier judge its answers, and (where it can) the gold correctness of any model step.
"""

from __future__ import annotations

import re
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


PROMPTS = ("fewshot", "zeroshot", "tools")
SHOTS = 4  # worked examples a few-shot prompt shows
TOOL_SYSTEM = (
    "Solve the problem. You may compute with Python: write code that prints what you need in a "
    "```python block, close it, and open a ```output block; the code is run and its output appears "
    "there. Then go on, and end with the line: {final}"
)
# (question, [text steps before the code], code, output, answer): the tools prompt's worked examples
TOOL_EXAMPLES = [
    (
        "Kim has 4 pens. Kim buys 3 more pens. Kim gives away 2 pens. How many pens does Kim have now?",
        ["Kim starts with 4 pens, gets 3 and gives away 2."],
        "print(4 + 3 - 2)",
        "5",
        "5",
    ),
    (
        "A shop sells 12 boxes of 15 pencils and then 37 single pencils. How many pencils does it sell?",
        ["The boxes hold 12 * 15 pencils; the single ones add 37."],
        "boxes = 12 * 15\nprint(boxes + 37)",
        "217",
        "217",
    ),
]


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


def tool_chat(final: str, separator: str, question: str) -> list[dict[str, str]]:
    """The tools prompt (Qwen2.5-Math's tool-integrated format): instructions, two worked
    examples that compute in a ```python block and read the ```output block, then the question.
    ``final`` formats the answer line ("The answer is {answer}."); ``separator`` joins steps."""
    examples = []
    for q, text, code, output, answer in TOOL_EXAMPLES:
        block = f"```python\n{code}\n```\n```output\n{output}\n```"
        examples.append((q, separator.join([*text, block, final.format(answer=answer)])))
    return chat(TOOL_SYSTEM.format(final=final.format(answer="N")), examples, question)


_BLOCK = re.compile(r"```python.*?(?:```(?:\s*```output.*?(?:```|$))?|$)", re.S)


def split_steps(text: str, separator: str) -> list[str]:
    """Steps of a solution split at ``separator``, where a ```python block with its ```output
    block is one step whatever separators it holds (an unclosed block runs to the end)."""

    def pieces(part: str) -> list[str]:  # "\n" splits as str.splitlines does (\r, \u2028, ...)
        return [p.strip() for p in (part.splitlines() if separator == "\n" else part.split(separator)) if p.strip()]

    steps: list[str] = []
    at = 0
    for m in _BLOCK.finditer(text):
        steps += pieces(text[at : m.start()])
        steps.append(m.group(0).strip())
        at = m.end()
    return [s for s in steps + pieces(text[at:]) if s]


def render(messages: list[dict[str, str]], tokenizer) -> str:
    """Prompt text for a model: its chat template when it has one, else plain turns."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    parts = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join(parts) + "\nassistant: "


from reasoner.tasks import arith as _arith  # noqa: E402,F401
from reasoner.tasks import gsm8k as _gsm8k  # noqa: E402,F401
from reasoner.tasks import math as _math  # noqa: E402,F401
