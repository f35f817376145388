"""Monte-Carlo step labels (Math-Shepherd; Wang et al., arXiv 2312.08935).

From the prefix ending at step t, N completions are sampled from the policy and verified; the
hard label is 1 when any completion is correct, the soft label the fraction correct.
"""

from __future__ import annotations

from reasoner.generation import Sampling
from reasoner.records import StepLabels, Trajectory
from reasoner.rewards import LabelContext, prefix_text, register


def labels_from_counts(correct: list[int], n: int) -> tuple[list[float], list[float]]:
    """Hard and soft labels from per-step counts of correct completions out of ``n``."""
    if n <= 0:
        raise ValueError("MC estimation needs at least one completion per step")
    hard = [1.0 if c > 0 else 0.0 for c in correct]
    soft = [c / n for c in correct]
    return hard, soft


@register("mc")
class MCLabeller:
    """Completions from every step prefix; the last step's label is the trajectory's own outcome.
    Where a search tree already holds a step's value (MCTS node Q, `meta["node_q"]`), that value
    is used and no completions are sampled for it. Trajectories that share a prefix (same prompt,
    same first steps) share its completions."""

    name = "mc"
    threshold = 0.5
    role = None
    targets_from = None
    variants = {"mc-hard": ("hard", 0.5)}  # any completion correct, as Math-Shepherd's hard label
    search_scores = None

    def label(self, trajectories: list[Trajectory], ctx: LabelContext) -> list[StepLabels]:
        s = ctx.settings
        backend = ctx.backend_for(ctx.policy)
        sep = ctx.pack.step_separator
        # identical prefixes (the same problem and the same first steps) are sampled once
        keys: dict[tuple[int, int], str] = {}  # (trajectory index, prefix length) -> prefix prompt
        requests: dict[str, tuple[int, int]] = {}  # prefix prompt -> its first (index, length)
        for ti, t in enumerate(trajectories):
            known = t.meta.get("node_q") or []
            for upto in range(1, len(t.steps)):
                if upto - 1 < len(known) and known[upto - 1] is not None:
                    continue
                keys[(ti, upto)] = prefix_text(t, upto, sep)
                requests.setdefault(keys[(ti, upto)], (ti, upto))
        prompts = [prompt for prompt in requests for _ in range(s.mc_samples)]
        sampling = Sampling(
            temperature=s.mc_temperature, max_new_tokens=s.mc_max_new_tokens, seed=ctx.seed, batch_size=ctx.batch_size
        )
        outs = backend.generate(prompts, sampling) if prompts else []
        counts: dict[str, int] = {}
        for k, (prompt, (ti, upto)) in enumerate(requests.items()):
            t = trajectories[ti]
            done = outs[k * s.mc_samples : (k + 1) * s.mc_samples]
            prefix = sep.join(t.steps[:upto]) + sep
            counts[prompt] = sum(ctx.is_correct(ctx.problems[t.problem_id], prefix + o.text) for o in done)
        result = []
        for ti, t in enumerate(trajectories):
            known = t.meta.get("node_q") or []
            soft = []
            for upto in range(1, len(t.steps)):
                if (ti, upto) in keys:
                    soft.append(counts[keys[(ti, upto)]] / s.mc_samples)
                else:
                    soft.append(float(known[upto - 1]))
            if t.steps:
                soft.append(1.0 if t.correct else 0.0)
            hard = [1.0 if v > 0 else 0.0 for v in soft]
            result.append(StepLabels(t.id, self.name, soft, meta={"hard": hard, "samples": s.mc_samples}))
        return result
