"""The registered verifiers.

- ``math``: the full verifier. `equivalence.quick` decides plain numbers, fractions, units,
  percent, choices, clock times, text and hedges in-process; anything else (radicals, pi,
  intervals, sets, tuples, matrices, equations) goes to a worker process running sympy under
  a hard time limit.
- ``numeric``: the in-process part only; what it cannot decide is "unverifiable".
"""

from __future__ import annotations

from reasoner.verifiers import register
from reasoner.verifiers.equivalence import quick
from reasoner.verifiers.pool import default_pool
from reasoner.verifiers.verdict import UNVERIFIABLE, Verdict


def _quick_or_none(gold: str, prediction: str | None) -> Verdict | None:
    try:
        return quick(gold, prediction)
    except Exception as err:  # a verdict, never an exception: a bug here must not stop a run
        return Verdict(UNVERIFIABLE, f"checker error: {type(err).__name__}")


@register("math")
def math_verifier(gold: str, prediction: str | None) -> Verdict:
    decided = _quick_or_none(gold, prediction)
    if decided is not None:
        return decided
    return default_pool().judge(gold, prediction or "")


@register("numeric")
def numeric(gold: str, prediction: str | None) -> Verdict:
    decided = _quick_or_none(gold, prediction)
    return decided if decided is not None else Verdict(UNVERIFIABLE, "needs the symbolic checker")
