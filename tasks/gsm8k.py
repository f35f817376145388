"""`gsm8k`: grade-school math word problems.

``source`` is a folder with ``train.jsonl`` and ``test.jsonl`` (fields ``question`` and
``answer``, the answer ending in ``#### N``; JSON, CSV or Parquet files and the hub's shards in
``main/`` are read too: `reasoner.tasks.loading`) or a hub name (only then is the network used).
"""

from __future__ import annotations

import random
import re
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
from reasoner.verifiers.grade import gold_text

SYSTEM = "Solve the problem step by step, one step per line. Finish with 'The answer is N.'"


@register("gsm8k")
class GSM8KPack:
    name = "gsm8k"
    extractor = "flexible"
    verifier = "math"
    step_separator = "\n"

    def __init__(self, source: str = "", prompt: str = "zeroshot", **_: Any):
        self.source = source
        self.prompt = check_prompt(self.name, prompt)
        self._shots: list[tuple[str, str]] | None = None  # filled by worked_examples

    def problems(self, split: str, n: int, seed: int, shuffle: bool = True) -> list[Problem]:
        rows = load_split(self.source, split, config_name="main", pack=self.name)
        indices = list(range(len(rows)))
        if split == "train" and shuffle:
            random.Random(seed).shuffle(indices)
        out = []
        for i in indices[:n]:
            row = rows[i]
            raw = gold_text(row.get("answer"))  # "... #### 72", or a number stored as a number
            if not isinstance(row.get("question"), str) or raw is None:
                key = "question" if not isinstance(row.get("question"), str) else "answer"
                raise PackError(f"gsm8k {split} row {i + 1}: field '{key}' missing or not text")
            solution, _, answer = raw.rpartition("####")
            solution = re.sub(r"<<[^>]*>>", "", solution).strip()
            out.append(
                Problem(
                    id=f"gsm8k-{split}-{i}",
                    pack=self.name,
                    question=row["question"],
                    answer=answer.strip().replace(",", ""),
                    solution=solution,
                )
            )
        return out

    def messages(self, problem: Problem) -> list[dict[str, str]]:
        if self.prompt == "tools":
            return tool_chat("The answer is {answer}.", "\n", problem.question)
        return chat(SYSTEM, worked_examples(self), problem.question)

    def is_final(self, step: str) -> bool:
        return states_answer(step)

    @staticmethod
    def worked(problem: Problem) -> str:
        """A worked solution in the format the prompt asks for: one step per line, then the answer
        (the answer alone for a row whose answer field holds no ``####`` solution)."""
        return (
            f"{problem.solution}\nThe answer is {problem.answer}."
            if problem.solution
            else f"The answer is {problem.answer}."
        )

    def split_steps(self, text: str) -> list[str]:
        return split_steps(text, "\n")

    def check_steps(self, problem: Problem, steps: list[str]) -> None:
        return None
