"""`math`: competition problems (MATH, MATH-500), loaded through `datasets`.

``source`` is a folder with ``train.jsonl`` and ``test.jsonl`` or ``test500.jsonl`` (fields
``problem`` and ``answer``, optional ``level``, ``subject``, ``solution``) or a hub name.
Solutions are split into steps at blank lines.
"""

from __future__ import annotations

import random
from typing import Any

from reasoner.records import Problem
from reasoner.tasks import PackError, register
from reasoner.tasks.loading import load_split

SYSTEM = "Solve the problem. Separate reasoning steps with a blank line and put the final answer in \\boxed{}."


@register("math")
class MathPack:
    name = "math"
    extractor = "flexible"
    verifier = "math"
    step_separator = "\n\n"

    def __init__(self, source: str = "", prompt: str = "zeroshot", **_: Any):
        self.source = source
        self.prompt = prompt

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        rows = load_split(self.source, split, pack=self.name, test_names=("test", "test500"))
        indices = list(range(len(rows)))
        if split == "train":
            random.Random(seed).shuffle(indices)
        out = []
        for i in indices[:n]:
            row = rows[i]
            for key in ("problem", "answer"):
                if not isinstance(row.get(key), str):
                    raise PackError(f"math {split} row {i + 1}: field '{key}' missing or not text")
            meta = {k: row[k] for k in ("level", "subject", "unique_id") if row.get(k) is not None}
            out.append(
                Problem(
                    id=f"math-{split}-{i}",
                    pack=self.name,
                    question=row["problem"],
                    answer=row["answer"],
                    solution=row.get("solution") or "",
                    meta=meta,
                )
            )
        return out

    def messages(self, problem: Problem) -> list[dict[str, str]]:
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": problem.question}]

    def split_steps(self, text: str) -> list[str]:
        return [p.strip() for p in text.strip().split("\n\n") if p.strip()]

    def check_steps(self, problem: Problem, steps: list[str]) -> None:
        return None
