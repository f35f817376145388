"""Training objectives, looked up by config name. Each builds its examples from verified
records and computes a loss on a micro-batch; none knows about the engine or the run folder."""

from __future__ import annotations

from collections.abc import Callable

OBJECTIVES: dict[str, Callable] = {}


def register(name: str):
    def deco(factory):
        if name in OBJECTIVES and OBJECTIVES[name] is not factory:
            raise ValueError(f"objective {name!r} is already registered")
        OBJECTIVES[name] = factory
        return factory

    return deco


def get_objective(name: str, **options):
    if name not in OBJECTIVES:
        raise KeyError(f"unknown objective {name!r}; valid: {', '.join(sorted(OBJECTIVES))}")
    return OBJECTIVES[name](**options)


from reasoner.training.objectives import implicit_prm as _implicit_prm  # noqa: E402,F401
from reasoner.training.objectives import judge_rl as _judge_rl  # noqa: E402,F401
from reasoner.training.objectives import rft as _rft  # noqa: E402,F401
