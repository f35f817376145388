"""Step labellers (process rewards), looked up by config name, and reward shaping.

A labeller reads verified trajectories and returns one `StepLabels` per trajectory: one score
per step, higher is better (soft MC labels and judge verdicts are in [0, 1]; implicit rewards
are log-ratios around 0, so each labeller also names the threshold that separates good steps
from bad ones). Labellers see models only through `LabelContext`, never the run folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from reasoner.config import LabelConfig, ToolsConfig
from reasoner.records import Problem, StepLabels, Trajectory
from reasoner.registry import Registry


@dataclass
class LabelContext:
    problems: dict[str, Problem]
    pack: Any
    settings: LabelConfig
    seed: int
    batch_size: int
    policy: str  # model spec of the iteration's policy
    backend_for: Callable[[str], Any]  # model spec -> generation backend (with .tokenizer)
    is_correct: Callable[[Problem, str], bool]  # verifies a full solution text
    reward_spec: str = ""  # implicit PRM phi for this iteration
    reference_spec: str = ""  # frozen reference of the implicit PRM
    tools: ToolsConfig = field(default_factory=ToolsConfig)  # sandbox limits of the `code` labeller


class Labeller(Protocol):
    """What the loop asks of a labeller besides its labels, so no phase branches on its name:

    - ``threshold``: a step scoring below it is predicted wrong;
    - ``role``: the model role it scores with, whose training phase learns from its labels
      (``"reward"``: the implicit PRM; ``"judge"``: the stepwise judge; None: no model of its own);
    - ``targets_from``: the labeller whose labels are this one's training targets (the judge
      learns from MC), or None;
    - ``variants``: extra readings of its labels kept in ``StepLabels.meta``, as
      ``{name: (meta key, threshold)}`` (MC's hard label: ``{"mc-hard": ("hard", 0.5)}``);
    - ``search_scores(trajectories, ctx, seed)``, where it can score partial solutions for
      beam search and MCTS (higher is better); None where it cannot.
    """

    name: str
    threshold: float
    role: str | None
    targets_from: str | None
    variants: dict[str, tuple[str, float]]
    search_scores: Callable[[list[Trajectory], LabelContext, int], list[float]] | None

    def label(self, trajectories: list[Trajectory], ctx: LabelContext) -> list[StepLabels]: ...


LABELLERS: Registry[Callable[[], Labeller]] = Registry("labeller")
register = LABELLERS.register


def get_labeller(name: str) -> Labeller:
    return LABELLERS.lookup(name)()


def prefix_text(t: Trajectory, upto: int, separator: str) -> str:
    """The trajectory's prompt followed by its first ``upto`` steps, ready to be continued."""
    if upto == 0:
        return t.prompt
    return t.prompt + separator.join(t.steps[:upto]) + separator


from reasoner.rewards import code as _code  # noqa: E402,F401
from reasoner.rewards import gold as _gold  # noqa: E402,F401
from reasoner.rewards import implicit as _implicit  # noqa: E402,F401
from reasoner.rewards import judge as _judge  # noqa: E402,F401
from reasoner.rewards import mc as _mc  # noqa: E402,F401
from reasoner.rewards import selfjudge as _selfjudge  # noqa: E402,F401
