"""`spark`: the policy as its own generative reward model (SPARK, arXiv 2509.22624).

The model that wrote the solutions (the iteration's policy, or in `reasoner evaluate --reward
spark` the evaluated model) is asked SPARK's pointwise question about each whole solution, the
question its auxiliary tasks train it on (`reasoner.training.objectives.spark`), and ends with
"Verdict: GOOD" or "Verdict: BAD". The solution's score, the mean verdict over
``label.judge_samples`` answers (none found counts 0.5), is given to each of its steps, so that
min, last and sum rank solutions alike. There is no separate reward model to train.
"""

from __future__ import annotations

from reasoner.generation import Sampling
from reasoner.records import StepLabels, Trajectory
from reasoner.rewards import LabelContext, register
from reasoner.rewards.judge import verdict


def self_scores(trajectories: list[Trajectory], ctx: LabelContext, seed: int) -> list[float]:
    from reasoner.tasks import render
    from reasoner.training.objectives.spark import pointwise_messages

    backend = ctx.backend_for(ctx.policy)
    n = ctx.settings.judge_samples
    prompts = [
        render(pointwise_messages(ctx.problems[t.problem_id].question, t.text), backend.tokenizer) for t in trajectories
    ]
    sampling = Sampling(
        temperature=0.8 if n > 1 else 0.0,
        max_new_tokens=ctx.settings.judge_max_new_tokens,
        seed=seed,
        batch_size=ctx.batch_size,
    )
    outs = backend.generate([p for p in prompts for _ in range(n)], sampling) if prompts else []
    scores = []
    for i in range(len(trajectories)):
        found = [verdict(o.text) for o in outs[i * n : (i + 1) * n]]
        scores.append(sum(0.5 if v is None else v for v in found) / n)
    return scores


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
