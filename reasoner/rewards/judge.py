"""`judge`: a generative stepwise judge (StepWiser; Xiong et al., arXiv 2508.19229).

The judge LM reads the problem, the earlier steps and the new step, reasons in a sentence and
ends with "Verdict: GOOD" or "Verdict: BAD". A step's score is the mean verdict over
``label.judge_samples`` judgments (a judgment without a verdict counts 0.5). The judgments are
kept in the labels so that the judge can be trained by RL against Monte-Carlo targets
(`reasoner.training.objectives.judge_rl`), filter training samples and reset bad steps in search.
"""

from __future__ import annotations

import re

from reasoner.generation import Sampling
from reasoner.records import Problem, StepLabels, Trajectory
from reasoner.rewards import LabelContext, register

INSTRUCTION = (
    "You check one step of a math solution. Say in one short sentence whether the new step is right, "
    "then end with 'Verdict: GOOD' or 'Verdict: BAD'."
)
_VERDICT = re.compile(r"verdict\s*:?\s*\**\s*(good|bad)", re.I)


def judge_messages(problem: Problem, earlier: list[str], step: str) -> list[dict[str, str]]:
    shown = "\n".join(earlier) if earlier else "(none)"
    user = f"Problem: {problem.question}\n\nEarlier steps:\n{shown}\n\nNew step:\n{step}"
    return [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": user}]


def verdict(text: str) -> float | None:
    """1.0 for GOOD, 0.0 for BAD (the last verdict wins), None when there is none."""
    found = _VERDICT.findall(text)
    if not found:
        return None
    return 1.0 if found[-1].lower() == "good" else 0.0


def judge_steps(requests: list[tuple[Problem, list[str], str]], ctx: LabelContext, samples: int, seed: int):
    """Judgments (texts) and scores for (problem, earlier steps, new step) requests."""
    from reasoner.tasks import render

    spec = ctx.settings.judge_model or ctx.policy
    backend = ctx.backend_for(spec)
    prompts = [render(judge_messages(p, e, s), backend.tokenizer) for p, e, s in requests]
    texts, scores = sample_verdicts(backend, prompts, samples, ctx, seed)
    return prompts, texts, scores


def sample_verdicts(backend, prompts: list[str], samples: int, ctx: LabelContext, seed: int):
    """``samples`` judgments of each prompt (greedy when one) and each prompt's mean verdict
    (a judgment without one counts 0.5)."""
    sampling = Sampling(
        temperature=0.8 if samples > 1 else 0.0,
        max_new_tokens=ctx.settings.judge_max_new_tokens,
        seed=seed,
        batch_size=ctx.batch_size,
    )
    outs = backend.generate([p for p in prompts for _ in range(samples)], sampling) if prompts else []
    texts = [[o.text for o in outs[i * samples : (i + 1) * samples]] for i in range(len(prompts))]
    scores = [sum(0.5 if verdict(x) is None else verdict(x) for x in group) / samples for group in texts]
    return texts, scores


@register("judge")
class JudgeLabeller:
    name = "judge"
    threshold = 0.5
    role = "judge"
    targets_from = "mc"  # StepWiser: judgments are rewarded for matching MC step targets
    variants: dict[str, tuple[str, float]] = {}

    def search_scores(self, trajectories: list[Trajectory], ctx: LabelContext, seed: int) -> list[float]:
        """The judge's verdict on each partial solution's last step."""
        asks = [(ctx.problems[t.problem_id], t.steps[:-1], t.steps[-1]) for t in trajectories]
        return judge_steps(asks, ctx, ctx.settings.judge_samples, seed)[2]

    def label(self, trajectories: list[Trajectory], ctx: LabelContext) -> list[StepLabels]:
        requests, owners = [], []
        for ti, t in enumerate(trajectories):
            for i, step in enumerate(t.steps):
                requests.append((ctx.problems[t.problem_id], t.steps[:i], step))
                owners.append(ti)
        prompts, texts, scores = judge_steps(requests, ctx, ctx.settings.judge_samples, ctx.seed)
        per: list[dict] = [{"labels": [], "prompts": [], "judgments": []} for _ in trajectories]
        for ti, prompt, group, score in zip(owners, prompts, texts, scores, strict=True):
            per[ti]["labels"].append(score)
            per[ti]["prompts"].append(prompt)
            per[ti]["judgments"].append(group)
        return [
            StepLabels(t.id, self.name, p["labels"], meta={"prompts": p["prompts"], "judgments": p["judgments"]})
            for t, p in zip(trajectories, per, strict=True)
        ]
