"""MCTS over reasoning steps with PUCT (as in rStar-Math, arXiv 2501.04519, and AlphaZero).

Per simulation and problem: select from the root by PUCT Q + c*P*sqrt(N_parent)/(1+N) while
the node is expanded and not terminal; expand the leaf by sampling ``mcts_expansions`` next
steps, with priors from the steps' length-normalised log-probabilities (plus Dirichlet noise
at the root when configured); evaluate each new node: a terminal node by the verifier when one
is given (training time), otherwise by the scorer (the reward model's value, squashed to
[0, 1]) or 0.5; back the value up to the root. All problems advance together, so each round is
one batched generation call. A problem stops after ``mcts_simulations`` simulations or
``mcts_token_budget`` generated tokens.

Outputs: a trajectory per terminal node (its steps' Q values in ``meta["node_q"]``, which the MC
labeller reuses), the trees, and step-level preference pairs between sibling steps whose Q
values differ by at least ``pair_margin`` (with ``pair_kinds = "same"`` only siblings that both
end the solution or both continue it).
"""

from __future__ import annotations

import math
import random

import torch

from reasoner.records import Pair
from reasoner.search import SearchResult, SearchSettings, register
from reasoner.search.beam import expand
from reasoner.search.puct import priors_from_logprobs, select
from reasoner.search.tree import SearchTree
from reasoner.tasks import render


def _leaf(tree: SearchTree, c: float) -> int:
    node = 0
    while node in tree.children and not tree.nodes[node].terminal:
        kids = tree.children[node]
        pick = select(
            [tree.q(k) for k in kids],
            [tree.nodes[k].visits for k in kids],
            [tree.nodes[k].prior for k in kids],
            max(tree.nodes[node].visits, 1),
            c,
        )
        node = kids[pick]
    return node


def _set_priors(tree: SearchTree, parent: int, rng: random.Random, alpha: float, weight: float) -> None:
    kids = tree.children[parent]
    lengths = [tree.nodes[k].token_end - tree.nodes[k].token_start for k in kids]
    priors = priors_from_logprobs([tree.logprob[k] for k in kids], lengths)
    if parent == 0 and weight > 0:
        gen = torch.Generator().manual_seed(rng.randrange(2**31))
        noise = _dirichlet(len(kids), alpha, gen)
        priors = [(1 - weight) * p + weight * float(n) for p, n in zip(priors, noise, strict=True)]
    for k, p in zip(kids, priors, strict=True):
        tree.nodes[k].prior = p


def _dirichlet(n: int, alpha: float, gen: torch.Generator) -> torch.Tensor:
    """(n,) Dirichlet(alpha) noise, drawn in log space: Gamma(a) = Gamma(a + 1) * U^(1/a)
    (Marsaglia and Tsang 2000), so a small alpha (AlphaZero's 0.03) puts its mass on one child
    instead of every gamma draw underflowing to the same smallest float and the noise coming
    out uniform."""
    g = torch._standard_gamma(torch.full((n,), alpha + 1.0, dtype=torch.float64), generator=gen)
    u = torch.rand(n, generator=gen, dtype=torch.float64).clamp_min(1e-300)
    return torch.softmax(g.log() + u.log() / alpha, dim=0)


def _values(trees, new, settings: SearchSettings) -> list[float]:
    values: list[float | None] = [None] * len(new)
    partial_idx = []
    for k, (t, n) in enumerate(new):
        tree = trees[t]
        if tree.nodes[n].terminal and settings.is_correct is not None:
            ok = settings.is_correct(tree.problem, "".join(tree.texts[i] for i in tree.path(n)))
            tree.nodes[n].correct = ok
            values[k] = 1.0 if ok else 0.0
        else:
            partial_idx.append(k)
    if partial_idx:
        if settings.value is not None:
            partial = [trees[new[k][0]].trajectory(new[k][1], f"partial-{k}", "mcts") for k in partial_idx]
            for k, v in zip(partial_idx, settings.value(partial), strict=True):
                values[k] = 1.0 / (1.0 + math.exp(-v))
        else:
            for k in partial_idx:
                values[k] = 0.5
    return values  # type: ignore[return-value]


@register("mcts")
def mcts(problems, backend, pack, tokenizer, settings: SearchSettings, progress=None) -> SearchResult:
    cfg = settings.tree
    rng = random.Random(settings.seed)
    prompts = [render(pack.messages(p), tokenizer) for p in problems]
    trees = [
        SearchTree.start(p, pr, tokenizer(pr, add_special_tokens=False)["input_ids"])
        for p, pr in zip(problems, prompts, strict=True)
    ]
    for sim in range(cfg.mcts_simulations):
        live = [t for t, tree in enumerate(trees) if not cfg.mcts_token_budget or tree.tokens < cfg.mcts_token_budget]
        leaves = [(t, _leaf(trees[t], cfg.mcts_c)) for t in live]
        for t, n in leaves:  # a terminal leaf is evaluated again: its value is known
            if trees[t].nodes[n].terminal and trees[t].nodes[n].visits:
                trees[t].backup(n, trees[t].q(n))
        todo = [(t, n) for t, n in leaves if not trees[t].nodes[n].terminal]
        if not live or not todo:
            if not live:
                break
            continue
        new = expand(
            trees,
            [pair for pair in todo for _ in range(cfg.mcts_expansions)],
            backend,
            pack,
            settings,
            settings.seed + sim,
        )
        for t, n in todo:
            _set_priors(trees[t], n, rng, cfg.mcts_dirichlet_alpha, cfg.mcts_dirichlet_weight)
        for (t, n), v in zip(new, _values(trees, new, settings), strict=True):
            trees[t].backup(n, v)
        if progress is not None:
            progress(sim + 1)
    out, pairs = [], []
    for tree in trees:
        terminals = [n.id for n in tree.nodes if n.terminal]
        terminals.sort(key=lambda i: (-tree.nodes[i].visits, -tree.q(i)))
        for rank, n in enumerate(terminals):
            traj = tree.trajectory(n, f"{tree.problem.id}/m{rank}", "mcts")
            traj.meta["visits"] = tree.nodes[n].visits
            out.append(traj)
        pairs += _pairs(tree, cfg.pair_margin, same_kind=cfg.pair_kinds == "same")
    return SearchResult(out, [tree.record("mcts") for tree in trees], pairs)


def _pairs(tree: SearchTree, margin: float, same_kind: bool = False) -> list[Pair]:
    """Sibling steps whose Q values differ by at least ``margin``: chosen and rejected are the
    two step prefixes (the steps from the root, joined). With ``same_kind`` only two steps that
    both end the solution or both continue it: an answer given too early is the rejected step of
    most mixed pairs (in one DPO run's first iteration on `arith`, of the 449 pairs where one step
    states the answer, the rejected one in 403), and DPO on them learns not to answer at all."""
    out = []
    for kids in tree.children.values():
        seen = [k for k in kids if tree.nodes[k].visits]
        for i, a in enumerate(seen):
            for b in seen[i + 1 :]:
                if same_kind and tree.nodes[a].terminal != tree.nodes[b].terminal:
                    continue
                qa, qb = tree.q(a), tree.q(b)
                if abs(qa - qb) >= margin:
                    hi, lo = (a, b) if qa > qb else (b, a)
                    out.append(
                        Pair(
                            problem_id=tree.problem.id,
                            chosen=_prefix(tree, hi),
                            rejected=_prefix(tree, lo),
                            weight=abs(qa - qb),
                            source="mcts",
                        )
                    )
    return out


def _prefix(tree: SearchTree, node: int) -> str:
    return "".join(tree.texts[i] for i in tree.path(node))
