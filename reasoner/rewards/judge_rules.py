"""StepWiser's rules for turning Monte-Carlo Q values into step verdicts (Xiong et al.,
"StepWiser: Stepwise Generative Judges for Wiser Reasoning", arXiv 2508.19229).

Q_t is the fraction of completions from the prefix ending at step t that reach a correct answer
(Q_0 that of the bare question). A step is good when its Q value does not drop:
- absolute: Q_t > tau;
- ratio: Q_t / Q_{t-1} >= tau (a step from a hopeless prefix is good if it stays possible);
- difference: Q_t - Q_{t-1} >= -tau.
"""

from __future__ import annotations

from collections.abc import Callable

from reasoner.registry import Registry

RULES: Registry[Callable[[list[float], float, float], list[bool]]] = Registry("judge rule")


@RULES.register("absolute")
def absolute(q: list[float], q0: float, tau: float = 0.0) -> list[bool]:
    return [v > tau for v in q]


@RULES.register("ratio")
def ratio(q: list[float], q0: float, tau: float = 0.8) -> list[bool]:
    out, prev = [], q0
    for v in q:
        out.append(v > 0 if prev == 0 else v / prev >= tau)
        prev = v
    return out


@RULES.register("difference")
def difference(q: list[float], q0: float, tau: float = 0.0) -> list[bool]:
    out, prev = [], q0
    for v in q:
        out.append(v - prev >= -tau)
        prev = v
    return out
