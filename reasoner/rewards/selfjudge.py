"""`spark`: the policy as its own generative reward model (SPARK, arXiv 2509.22624).

The model that wrote the solutions (the iteration's policy, or in `reasoner evaluate --reward
spark` the evaluated model) is asked SPARK's pointwise question about each whole solution, the
question its auxiliary tasks train it on (`reasoner.training.objectives.spark`), whose answer is
"Verdict: GOOD" or "Verdict: BAD". The solution's score is the model's probability of the first
against the second, both read by teacher forcing (a generative verifier's P(Yes), as GenRM scores
one: Zhang et al., arXiv 2408.15240), and is given to each of its steps, so that min, last and sum
rank solutions alike. A greedy verdict would tie every solution the model calls BAD, and a judge
trained where most samples are wrong calls nearly all of them BAD; the probability still orders
them. There is no separate reward model to train.
"""

from __future__ import annotations

import math

from reasoner.records import StepLabels, Trajectory
from reasoner.rewards import LabelContext, register


def good_probability(logp_good: float, logp_bad: float) -> float:
    """exp(g) / (exp(g) + exp(b)) for the log-probabilities g, b of the two verdicts: the verdict
    distribution restricted to GOOD and BAD, computed as a sigmoid of g - b (no overflow)."""
    d = logp_good - logp_bad
    if d >= 0:
        return 1.0 / (1.0 + math.exp(-d))
    e = math.exp(d)
    return e / (1.0 + e)


def self_scores(trajectories: list[Trajectory], ctx: LabelContext) -> list[float]:
    from reasoner.tasks import render
    from reasoner.training.objectives.spark import BAD, GOOD, pointwise_messages

    backend = ctx.backend_for(ctx.policy)
    prompts = [
        render(pointwise_messages(ctx.problems[t.problem_id].question, t.text), backend.tokenizer) for t in trajectories
    ]
    if not prompts:
        return []
    # one call for both verdicts, so that a backend can run each prompt once for the two
    scored = backend.score([p for p in prompts for _ in (GOOD, BAD)], [GOOD, BAD] * len(prompts))
    return [good_probability(sum(scored[2 * i]), sum(scored[2 * i + 1])) for i in range(len(prompts))]


@register("spark")
class SelfJudgeLabeller:
    name = "spark"
    threshold = 0.5
    role = None  # the policy itself: no model of its own to train
    targets_from = None
    variants: dict[str, tuple[str, float]] = {}

    def search_scores(self, trajectories: list[Trajectory], ctx: LabelContext, seed: int) -> list[float]:
        return self_scores(trajectories, ctx)

    def label(self, trajectories: list[Trajectory], ctx: LabelContext) -> list[StepLabels]:
        scores = self_scores(trajectories, ctx)
        return [
            StepLabels(t.id, self.name, [s] * len(t.steps), meta={"solution": s})
            for t, s in zip(trajectories, scores, strict=True)
        ]
