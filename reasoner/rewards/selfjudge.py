"""`spark`: the policy as its own generative reward model (SPARK, arXiv 2509.22624).

The model that wrote the solutions (the iteration's policy, or in `reasoner evaluate --reward
spark` the evaluated model) is asked SPARK's pointwise question about each whole solution, the
question its auxiliary tasks train it on (`reasoner.training.objectives.spark`), and ends with
"Verdict: GOOD" or "Verdict: BAD". The solution's score, the mean verdict over
``label.judge_samples`` answers (none found counts 0.5), is given to each of its steps, so that
min, last and sum rank solutions alike. There is no separate reward model to train.
"""

from __future__ import annotations

from reasoner.records import StepLabels, Trajectory
from reasoner.rewards import LabelContext, register
from reasoner.rewards.judge import sample_verdicts


def self_scores(trajectories: list[Trajectory], ctx: LabelContext, seed: int) -> list[float]:
    from reasoner.tasks import render
    from reasoner.training.objectives.spark import pointwise_messages

    backend = ctx.backend_for(ctx.policy)
    prompts = [
        render(pointwise_messages(ctx.problems[t.problem_id].question, t.text), backend.tokenizer) for t in trajectories
    ]
    return sample_verdicts(backend, prompts, ctx.settings.judge_samples, ctx, seed)[1]


@register("spark")
class SelfJudgeLabeller:
    name = "spark"
    threshold = 0.5
    role = None  # the policy itself: no model of its own to train
    targets_from = None
    variants: dict[str, tuple[str, float]] = {}

    def search_scores(self, trajectories: list[Trajectory], ctx: LabelContext, seed: int) -> list[float]:
        return self_scores(trajectories, ctx, seed)

    def label(self, trajectories: list[Trajectory], ctx: LabelContext) -> list[StepLabels]:
        scores = self_scores(trajectories, ctx, ctx.seed)
        return [
            StepLabels(t.id, self.name, [s] * len(t.steps), meta={"solution": s})
            for t, s in zip(trajectories, scores, strict=True)
        ]
