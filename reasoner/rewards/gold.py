"""`gold`: the pack's own step check (arith knows every intermediate result). A reference for
step-level evaluation and an upper bound for the other labellers; None (no claim) counts as 1."""

from __future__ import annotations

from reasoner.errors import UserError
from reasoner.records import StepLabels
from reasoner.rewards import LabelContext, register


@register("gold")
class GoldLabeller:
    name = "gold"
    threshold = 0.5
    role = None
    targets_from = None
    variants: dict[str, tuple[str, float]] = {}
    search_scores = None

    def label(self, trajectories, ctx: LabelContext) -> list[StepLabels]:
        out = []
        for t in trajectories:
            gold = ctx.pack.check_steps(ctx.problems[t.problem_id], t.steps)
            if gold is None:
                raise UserError(f"pack {ctx.pack.name} has no gold step labels; drop 'gold' from label.labellers")
            out.append(StepLabels(t.id, self.name, [0.0 if g is False else 1.0 for g in gold]))
        return out
