"""Searchers: turn problems into trajectories with a generation backend, looked up by name.

Search never imports training; it sees a backend (the Backend protocol), the pack and a
`SearchSettings`, and returns `Trajectory` records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from reasoner.generation import Backend
from reasoner.records import Problem, Trajectory


@dataclass(frozen=True)
class SearchSettings:
    samples: int = 8
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 96
    batch_size: int = 32
    seed: int = 0


class Searcher(Protocol):
    def __call__(
        self,
        problems: list[Problem],
        backend: Backend,
        pack,
        tokenizer,
        settings: SearchSettings,
        progress: Callable[[int], None] | None = None,
    ) -> list[Trajectory]: ...


SEARCHERS: dict[str, Searcher] = {}


def register(name: str):
    def deco(fn):
        if name in SEARCHERS and SEARCHERS[name] is not fn:
            raise ValueError(f"searcher {name!r} is already registered")
        SEARCHERS[name] = fn
        return fn

    return deco


def get_searcher(name: str) -> Searcher:
    if name not in SEARCHERS:
        raise KeyError(f"unknown searcher {name!r}; valid: {', '.join(sorted(SEARCHERS))}")
    return SEARCHERS[name]


from reasoner.search import best_of_n as _best_of_n  # noqa: E402,F401
