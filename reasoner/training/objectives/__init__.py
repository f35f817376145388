"""Training objectives, looked up by config name. Each builds its examples from verified
records and computes a loss on a micro-batch; none knows about the engine or the run folder."""

from __future__ import annotations

from collections.abc import Callable

from reasoner.registry import Registry

OBJECTIVES: Registry[Callable] = Registry("objective")
register = OBJECTIVES.register


def get_objective(name: str, **options):
    return OBJECTIVES.lookup(name)(**options)


from reasoner.training.objectives import cream as _cream  # noqa: E402,F401
from reasoner.training.objectives import dpo as _dpo  # noqa: E402,F401
from reasoner.training.objectives import implicit_prm as _implicit_prm  # noqa: E402,F401
from reasoner.training.objectives import judge_rl as _judge_rl  # noqa: E402,F401
from reasoner.training.objectives import mutual as _mutual  # noqa: E402,F401
from reasoner.training.objectives import prime as _prime  # noqa: E402,F401
from reasoner.training.objectives import rft as _rft  # noqa: E402,F401
from reasoner.training.objectives import spark as _spark  # noqa: E402,F401
