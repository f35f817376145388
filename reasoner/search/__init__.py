"""Searchers: turn problems into trajectories with a generation backend, looked up by name.

Search never imports training; it sees a backend (the Backend protocol), the pack and a
`SearchSettings` (which may carry a scorer of partial solutions, a verifier for terminal
nodes and a step judge), and returns a `SearchResult`: trajectories, and for tree searches
their trees and step-level preference pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from reasoner.config import SearchConfig
from reasoner.generation import Backend
from reasoner.records import Pair, Problem, Trajectory, Tree
from reasoner.registry import Registry


@dataclass(frozen=True)
class SearchSettings:
    samples: int = 8
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 96
    batch_size: int = 32
    seed: int = 0
    tree: SearchConfig = field(default_factory=SearchConfig)
    # beam search: scores partial or complete solutions (higher is better), `search.beam_scorer`
    scorer: Callable[[list[Trajectory]], list[float]] | None = None
    # MCTS: value (a logit; squashed to (0, 1)) of a partial solution, `search.mcts_value`
    value: Callable[[list[Trajectory]], list[float]] | None = None
    # training time only: verifies a terminal solution's final answer
    is_correct: Callable[[Problem, str], bool] | None = None
    # StepWiser: score of a new step given the problem and the earlier steps (>= 0.5 is good)
    step_judge: Callable[[list[tuple[Problem, list[str], str]]], list[float]] | None = None


@dataclass
class SearchResult:
    trajectories: list[Trajectory]
    trees: list[Tree] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)


class Searcher(Protocol):
    def __call__(
        self,
        problems: list[Problem],
        backend: Backend,
        pack,
        tokenizer,
        settings: SearchSettings,
        progress: Callable[[int], None] | None = None,
    ) -> SearchResult: ...


SEARCHERS: Registry[Searcher] = Registry("searcher")
register = SEARCHERS.register
get_searcher = SEARCHERS.lookup


from reasoner.search import beam as _beam  # noqa: E402,F401
from reasoner.search import best_of_n as _best_of_n  # noqa: E402,F401
from reasoner.search import mcts as _mcts  # noqa: E402,F401
