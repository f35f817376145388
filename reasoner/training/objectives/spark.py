"""SPARK (Liu et al., "SPARK: Synergistic Policy And Reward Co-Evolving Framework", arXiv
2509.22624): the policy's verified rollouts, recycled into auxiliary tasks that train the same
policy as a generative reward model, mixed into its supervised batch.

- ``pointwise``: a problem and one solution; the target is "Verdict: GOOD" or "Verdict: BAD" as
  the verifier judged it, with as many of each (correct and wrong samples drawn in equal numbers).
- ``pairwise``: a problem and two solutions of it, one verified correct and one not, in a seeded
  order; the target names the correct one ("Answer: A" or "Answer: B").
- ``reflection``: a problem, a wrong solution and the judgement that it is wrong; the target is a
  verified-correct solution of the same problem.

The main examples are RFT's (the distinct correct samples); `train.spark_ratio` auxiliary
examples per main example are drawn in turn from the task kinds `train.spark_tasks` names. The
labeller `spark` then asks the policy the pointwise question, so the trained policy serves as
the judge in the label phase and for best-of-n at test time (`reasoner evaluate --reward
spark`), with no separate reward model.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from reasoner.records import Problem, Trajectory
from reasoner.training.objectives import register
from reasoner.training.objectives.data import RolloutData
from reasoner.training.objectives.rft import RFT, SFTExample, select

TASKS = ("pointwise", "pairwise", "reflection")
GOOD, BAD = "Verdict: GOOD", "Verdict: BAD"  # the pointwise targets, which the labeller `spark` scores
POINTWISE = "You check a solution to a math problem. End with 'Verdict: GOOD' if it is correct or 'Verdict: BAD'."
PAIRWISE = "Two solutions to a math problem follow; exactly one is correct. End with 'Answer: A' or 'Answer: B'."
REFLECTION = "This solution to a math problem is wrong. Write a corrected solution."


def pointwise_messages(question: str, solution: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": POINTWISE},
        {"role": "user", "content": f"Problem: {question}\n\nSolution:\n{solution}"},
    ]


def pairwise_messages(question: str, a: str, b: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": PAIRWISE},
        {"role": "user", "content": f"Problem: {question}\n\nSolution A:\n{a}\n\nSolution B:\n{b}"},
    ]


def reflection_messages(question: str, wrong: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": REFLECTION},
        {"role": "user", "content": f"Problem: {question}\n\nWrong solution:\n{wrong}\n\n{BAD}"},
    ]


def auxiliary_tasks(
    trajectories: list[Trajectory],
    questions: dict[str, str],
    kinds: Sequence[str],
    count: int,
    seed: int,
) -> list[tuple[str, list[dict[str, str]], str]]:
    """``count`` (kind, messages, target) tasks from verified samples, the kinds in turn (a kind
    with nothing left to draw from is skipped), each drawn in a seeded order without repeats."""
    for kind in kinds:
        if kind not in TASKS:
            raise ValueError(f"SPARK task must be one of {', '.join(TASKS)}, got {kind!r} (train.spark_tasks)")
    rng = random.Random(seed)
    good: dict[str, list[Trajectory]] = {}
    bad: dict[str, list[Trajectory]] = {}
    seen: set[tuple[str, str]] = set()
    for t in sorted(trajectories, key=lambda t: t.id):
        key = (t.problem_id, t.text.strip())
        if t.correct is None or not t.text.strip() or key in seen or t.problem_id not in questions:
            continue
        seen.add(key)
        (good if t.correct else bad).setdefault(t.problem_id, []).append(t)
    both = sorted(set(good) & set(bad))
    pools: dict[str, list[tuple[list[dict[str, str]], str]]] = {}
    # as many GOOD as BAD targets, each side drawn at random: with the verifier's mix (92% BAD at
    # the embedded model's first iteration) the judge learned the prior and called every sample BAD
    right = [t for pid in sorted(good) for t in good[pid]]
    wrong = [t for pid in sorted(bad) for t in bad[pid]]
    rng.shuffle(right)
    rng.shuffle(wrong)
    singles = [t for pair in zip(right, wrong, strict=False) for t in pair]  # the longer side's rest: unused
    pools["pointwise"] = [
        (pointwise_messages(questions[t.problem_id], t.text), GOOD if t.correct else BAD) for t in singles
    ]
    pools["pairwise"] = []
    pools["reflection"] = []
    for pid in both:
        for g in good[pid]:
            for b in bad[pid]:
                first_good = rng.random() < 0.5
                a, bb = (g.text, b.text) if first_good else (b.text, g.text)
                pools["pairwise"].append(
                    (pairwise_messages(questions[pid], a, bb), "Answer: A" if first_good else "Answer: B")
                )
                pools["reflection"].append((reflection_messages(questions[pid], b.text), g.text))
    for pool in pools.values():
        rng.shuffle(pool)
    out: list[tuple[str, list[dict[str, str]], str]] = []
    cursor = dict.fromkeys(kinds, 0)
    while len(out) < count and any(cursor[k] < len(pools[k]) for k in kinds):
        for kind in kinds:
            if len(out) < count and cursor[kind] < len(pools[kind]):
                messages, target = pools[kind][cursor[kind]]
                out.append((kind, messages, target))
                cursor[kind] += 1
    return out


@register("spark")
class SPARK(RFT):
    """RFT on the correct samples plus SPARK's auxiliary reward tasks, all supervised."""

    name = "spark"
    needs_problems = True  # the train phase passes the iteration's problems (their questions)

    def from_rollouts(self, data: RolloutData) -> list[SFTExample]:
        from reasoner.tasks import render

        kept = select(
            data.trajectories, require_steps=data.require_steps, max_per_problem=data.max_per_problem, seed=data.seed
        )
        eos = data.tokenizer.eos_token or ""
        main = self.examples(kept, data.tokenizer, eos)
        problems: dict[str, Problem] = data.options.get("problems", {})
        questions = {pid: p.question for pid, p in problems.items()}
        count = round(data.options.get("spark_ratio", 1.0) * len(main))
        kinds = data.options.get("spark_tasks", TASKS)
        tasks = auxiliary_tasks(data.trajectories, questions, kinds, count, data.seed)
        aux = [
            SFTExample(data.ids(render(messages, data.tokenizer)), data.ids(target + eos), f"spark:{kind}:{i}")
            for i, (kind, messages, target) in enumerate(tasks)
        ]
        mixed = main + aux
        random.Random(data.seed).shuffle(mixed)
        return mixed
