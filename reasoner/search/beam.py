"""Step-level, reward-guided beam search (as in Snell et al., arXiv 2408.03314, and
search-and-learn's `beam_search`).

Each round, every kept partial solution is expanded with ``beam_expansions`` sampled next
steps (generation stops at the pack's step separator); the candidates are scored with the
configured scorer (the implicit PRM's Q value by default) and the best ``beam_width`` per
problem are kept. With a step judge and ``judge_resets > 0``, a new step the judge calls bad
is resampled up to that many times (StepWiser's reset). Finished solutions are returned best
first; every node goes into the problem's tree.
"""

from __future__ import annotations

from reasoner.generation import Sampling
from reasoner.records import Trajectory
from reasoner.search import SearchResult, SearchSettings, register
from reasoner.search.tree import SearchTree, is_terminal
from reasoner.tasks import render


def expand(
    trees: list[SearchTree], nodes: list[tuple[int, int]], backend, pack, settings: SearchSettings, seed: int
) -> list[tuple[int, int]]:
    """Sample one next step for each (tree, node); returns the new (tree, node) pairs."""
    cfg = settings.tree
    sampling = Sampling(
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_new_tokens=cfg.step_tokens,
        stop=(pack.step_separator,),
        seed=seed,
        batch_size=settings.batch_size,
        keep_kv=True,
    )
    outs = backend.generate_ids([trees[t].ids[n] for t, n in nodes], sampling)
    new = []
    for (t, n), out in zip(nodes, outs, strict=True):
        tree = trees[t]
        terminal = is_terminal(out.text, out.finish_reason, tree.depth(n) + 1, cfg.max_steps, pack)
        lp = float(sum(out.logprobs))
        new.append((t, tree.add(n, out.text, out.token_ids, lp, terminal, executions=out.meta.get("executions"))))
    return new


def _reset_bad_steps(trees, new, backend, pack, settings: SearchSettings, seed: int):
    """Resample steps the judge scores below 0.5, up to ``judge_resets`` times."""
    for attempt in range(settings.tree.judge_resets):
        asks = [
            (trees[t].problem, [trees[t].nodes[i].step for i in trees[t].path(n)[:-1]], trees[t].nodes[n].step)
            for t, n in new
        ]
        scores = settings.step_judge(asks)
        bad = [k for k, s in enumerate(scores) if s < 0.5]
        if not bad:
            break
        redo = expand(
            trees,
            [(new[k][0], trees[new[k][0]].nodes[new[k][1]].parent) for k in bad],
            backend,
            pack,
            settings,
            seed + 7919 * (attempt + 1),
        )
        for k, pair in zip(bad, redo, strict=True):
            new[k] = pair
    return new


@register("beam")
def beam(problems, backend, pack, tokenizer, settings: SearchSettings, progress=None) -> SearchResult:
    cfg = settings.tree
    prompts = [render(pack.messages(p), tokenizer) for p in problems]
    trees = [
        SearchTree.start(p, pr, tokenizer(pr, add_special_tokens=False)["input_ids"])
        for p, pr in zip(problems, prompts, strict=True)
    ]
    active = [(t, 0) for t in range(len(trees))]
    finished: list[tuple[int, int]] = []
    for depth in range(cfg.max_steps):
        if not active:
            break
        todo = [pair for pair in active for _ in range(cfg.beam_expansions)]
        new = expand(trees, todo, backend, pack, settings, settings.seed + depth)
        if settings.step_judge is not None and cfg.judge_resets:
            new = _reset_bad_steps(trees, new, backend, pack, settings, settings.seed + depth)
        scores = _scores(trees, new, settings)
        active = []
        for t in range(len(trees)):
            mine = sorted(((scores[k], k) for k, (tt, _) in enumerate(new) if tt == t), key=lambda x: -x[0])
            kept = [new[k] for _, k in mine[: cfg.beam_width]]
            for pair, score in zip(kept, [s for s, _ in mine], strict=False):
                trees[pair[0]].value_sum[pair[1]] = score
                trees[pair[0]].nodes[pair[1]].value = score
                trees[pair[0]].nodes[pair[1]].visits = 1
            finished += [p for p in kept if trees[p[0]].nodes[p[1]].terminal]
            active += [p for p in kept if not trees[p[0]].nodes[p[1]].terminal]
        if progress is not None:
            progress(depth + 1)
    out = []
    for t, tree in enumerate(trees):
        ends = [n for tt, n in finished if tt == t] or [n for tt, n in active if tt == t]
        ends.sort(key=lambda n: -tree.nodes[n].value)
        for rank, n in enumerate(ends):
            traj = tree.trajectory(n, f"{tree.problem.id}/b{rank}", "beam")
            traj.meta["score"] = tree.nodes[n].value
            out.append(traj)
    return SearchResult(out, [tree.record("beam") for tree in trees])


def _scores(trees, pairs, settings: SearchSettings) -> list[float]:
    if settings.scorer is None:  # no reward model: the policy's own mean token log-probability
        return [
            trees[t].logprob[n] / max(1, trees[t].nodes[n].token_end - trees[t].nodes[n].token_start) for t, n in pairs
        ]
    partial: list[Trajectory] = [trees[t].trajectory(n, f"partial-{k}", "beam") for k, (t, n) in enumerate(pairs)]
    return settings.scorer(partial)
