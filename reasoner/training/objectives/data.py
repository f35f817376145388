"""What a policy objective builds its examples from: one iteration's verified rollouts, the
step-level pairs its tree search found, and the reference model's token log-probabilities."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reasoner.records import Pair, Trajectory

Scorer = Callable[[list[tuple[list[int], list[int]]]], list[list[float]]]


@dataclass
class RolloutData:
    trajectories: list[Trajectory]
    tokenizer: Any
    seed: int
    max_per_problem: int = 4
    require_steps: bool = False  # the gold step oracle (upper-bound baseline only)
    pairs: list[Pair] = field(default_factory=list)  # tree search's step-level pairs
    step_separator: str = "\n"
    reference: Scorer | None = None  # token log-probs of (prompt ids, completion ids) under the reference
    options: dict[str, Any] = field(default_factory=dict)  # objective-specific settings (beta, pair kinds)

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]
