"""`math`: competition problems (MATH, MATH-500).

``source`` is a folder with ``train.jsonl`` and ``test.jsonl`` or ``test500.jsonl`` (or the
same names as JSON, CSV or Parquet files, or hub shards: `reasoner.tasks.loading`; fields
``problem`` and ``answer``, optional ``level``, ``subject``, ``solution``; MATH as first
published, with no ``answer`` and ``type`` for the subject, gives the last ``\\boxed{}`` of
its ``solution``) or a hub name. Solutions are split into steps at blank lines.
"""

from __future__ import annotations

import random
from typing import Any

from reasoner.records import Problem
from reasoner.tasks import (
    PackError,
    chat,
    check_prompt,
    register,
    split_steps,
    states_answer,
    tool_chat,
    worked_examples,
)
from reasoner.tasks.loading import load_split
from reasoner.verifiers.extract import last_boxed
from reasoner.verifiers.grade import gold_text

SYSTEM = "Solve the problem. Separate reasoning steps with a blank line and put the final answer in \\boxed{}."


@register("math")
class MathPack:
    name = "math"
    extractor = "flexible"
    verifier = "math"
    step_separator = "\n\n"

    def __init__(self, source: str = "", prompt: str = "zeroshot", **_: Any):
        self.source = source
        self.prompt = check_prompt(self.name, prompt)
        self._shots: list[tuple[str, str]] | None = None  # filled by worked_examples

    def problems(self, split: str, n: int, seed: int, shuffle: bool = True) -> list[Problem]:
        rows = load_split(self.source, split, pack=self.name, test_names=("test", "test500"))
        indices = list(range(len(rows)))
        if split == "train" and shuffle:
            random.Random(seed).shuffle(indices)
        out = []
        for i in indices[:n]:
            row = rows[i]
            answer = gold_text(row.get("answer"))  # a number stored as a number (145.0) is accepted
            if answer is None and isinstance(row.get("solution"), str):
                answer = last_boxed(row["solution"])  # MATH as first published: no answer field
            if not isinstance(row.get("problem"), str) or answer is None:
                key = "problem" if not isinstance(row.get("problem"), str) else "answer"
                why = "" if key == "problem" else " (and no \\boxed{} in a solution field)"
                raise PackError(f"math {split} row {i + 1}: field '{key}' missing or not text{why}")
            meta = {k: row[k] for k in ("level", "subject", "unique_id") if row.get(k) is not None}
            if "subject" not in meta and row.get("type") is not None:
                meta["subject"] = row["type"]  # the original MATH's name for it
            out.append(
                Problem(
                    id=f"math-{split}-{i}",
                    pack=self.name,
                    question=row["problem"],
                    answer=answer,
                    solution=row.get("solution") or "",
                    meta=meta,
                )
            )
        return out

    def messages(self, problem: Problem) -> list[dict[str, str]]:
        if self.prompt == "tools":
            return tool_chat("The answer is $\\boxed{{{answer}}}$.", "\n\n", problem.question)
        return chat(SYSTEM, worked_examples(self), problem.question)

    def is_final(self, step: str) -> bool:
        return states_answer(step)

    @staticmethod
    def worked(problem: Problem) -> str:
        """MATH's own worked solution (it ends in \\boxed{answer})."""
        return problem.solution or f"The answer is $\\boxed{{{problem.answer}}}$."

    def split_steps(self, text: str) -> list[str]:
        return split_steps(text, "\n\n")

    def check_steps(self, problem: Problem, steps: list[str]) -> None:
        return None
