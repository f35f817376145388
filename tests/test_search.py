"""Tree search on tiny models: tree shapes, backups, budgets, pairs and prefix reuse."""

import pytest

from reasoner.config import SearchConfig
from reasoner.generation.hf import HFBackend
from reasoner.records import Problem
from reasoner.search import SearchSettings, get_searcher
from reasoner.search.tree import SearchTree
from reasoner.tasks import get_pack


def _setup(tiny):
    pack = get_pack("arith", prompt="zeroshot")
    return pack, pack.problems("test", 3, 0), HFBackend(tiny.model, tiny.tokenizer)


def test_backup_by_hand():
    tree = SearchTree.start(Problem("p", "arith", "q", "1"), "prompt", [1, 2, 3])
    a = tree.add(0, "a\n", [5, 6], -1.0, False)
    b = tree.add(a, "b\n", [7], -0.5, True)
    tree.backup(b, 1.0)
    tree.backup(a, 0.0)
    # root and a saw both values: Q = 0.5; b saw only 1.0
    assert (tree.nodes[0].visits, tree.q(0)) == (2, 0.5)
    assert (tree.nodes[a].visits, tree.q(a)) == (2, 0.5)
    assert (tree.nodes[b].visits, tree.q(b)) == (1, 1.0)
    traj = tree.trajectory(b, "t", "mcts")
    assert traj.steps == ["a", "b"] and traj.step_token_ends == [2, 3] and traj.meta["node_q"] == [0.5, 1.0]


def test_beam_keeps_width_and_is_deterministic(tiny):
    pack, problems, backend = _setup(tiny)
    cfg = SearchConfig(beam_width=2, beam_expansions=3, max_steps=3, step_tokens=5)
    settings = SearchSettings(temperature=1.0, seed=4, tree=cfg, batch_size=16)
    a = get_searcher("beam")(problems, backend, pack, tiny.tokenizer, settings)
    b = get_searcher("beam")(problems, backend, pack, tiny.tokenizer, settings)
    assert [t.text for t in a.trajectories] == [t.text for t in b.trajectories]
    for tree in a.trees:
        depth1 = [n for n in tree.nodes if n.parent == 0]
        assert len(depth1) == 3  # the root expanded beam_expansions times
        depth = {0: 0}
        for n in tree.nodes[1:]:
            depth[n.id] = depth[n.parent] + 1
        for d in range(1, 3):  # nodes expanded in round d+1 were kept in round d: at most beam_width
            assert len({n.parent for n in tree.nodes[1:] if depth[n.id] == d + 1}) <= 2
    for t in a.trajectories:
        assert 1 <= len(t.steps) <= 3


def test_mcts_visits_budget_and_pairs(tiny):
    pack, problems, backend = _setup(tiny)
    cfg = SearchConfig(
        mcts_simulations=6,
        mcts_expansions=2,
        max_steps=3,
        step_tokens=4,
        mcts_value="none",
        mcts_dirichlet_weight=0.25,
        pair_margin=0.0,
    )
    # The verifier scores terminal nodes at training time: call everything with a "7" correct.
    settings = SearchSettings(
        temperature=1.0, seed=1, tree=cfg, batch_size=16, is_correct=lambda problem, text: "7" in text
    )
    result = get_searcher("mcts")(problems, backend, pack, tiny.tokenizer, settings)
    for tree in result.trees:
        root = tree.nodes[0]
        children = [n for n in tree.nodes if n.parent == 0]
        assert len(children) == 2 and abs(sum(n.prior for n in children) - 1) < 1e-6
        # every backed-up value passed through the root
        assert root.visits == sum(n.visits for n in children)
        assert all(0.0 <= n.value <= 1.0 for n in tree.nodes)
        for n in tree.nodes:
            if n.terminal and n.correct is not None:
                assert n.value == (1.0 if n.correct else 0.0)
    assert all(p.weight >= 0.0 and p.chosen != p.rejected for p in result.pairs)
    budget = SearchSettings(
        temperature=1.0,
        seed=1,
        tree=SearchConfig(
            mcts_simulations=50, mcts_expansions=2, step_tokens=4, mcts_token_budget=10, mcts_value="none"
        ),
    )
    capped = get_searcher("mcts")(problems, backend, pack, tiny.tokenizer, budget)
    assert all(sum(n.token_end - n.token_start for n in t.nodes[1:]) < 10 + 2 * 4 for t in capped.trees)


def test_expanding_a_node_reuses_its_prefix(tiny, monkeypatch):
    pack, problems, backend = _setup(tiny)
    newline = tiny.tokenizer.convert_tokens_to_ids("\n")
    forward = tiny.model.forward

    def short_steps(*args, **kwargs):  # make "\n" likely so steps end and trees grow deep
        out = forward(*args, **kwargs)
        out.logits[..., newline] += 4.0
        return out

    monkeypatch.setattr(tiny.model, "forward", short_steps)
    cfg = SearchConfig(mcts_simulations=5, mcts_expansions=2, max_steps=4, step_tokens=6, mcts_value="none")
    settings = SearchSettings(temperature=1.0, seed=2, tree=cfg, batch_size=16)
    from reasoner.generation import Sampling
    from reasoner.tasks import render

    prompt = tiny.tokenizer(render(pack.messages(problems[0]), tiny.tokenizer), add_special_tokens=False)["input_ids"]
    backend.generate_ids([prompt], Sampling(max_new_tokens=1, keep_kv=True))  # the prompt's keys and values
    before = dict(backend.stats)
    result = get_searcher("mcts")(problems[:1], backend, pack, tiny.tokenizer, settings)
    new_tokens = backend.stats["decode_tokens"] - before["decode_tokens"]
    prefill = backend.stats["prefill_tokens"] - before["prefill_tokens"]
    nodes = len(result.trees[0].nodes) - 1
    assert max(n.token_start for n in result.trees[0].nodes) > len(prompt)  # grandchildren exist
    # Each expansion prefills only the last token of its node (the one sampled but not yet fed).
    assert prefill <= nodes + 1
    assert (prefill + new_tokens) / max(new_tokens, 1) < 1.5


def test_mcts_pairs_of_the_same_kind_by_hand():
    """Siblings a (ends the solution, Q 1), b (goes on, Q 0.5), c (ends it, Q 0): any pairs all
    three (a over b, a over c, b over c, weights the Q gaps); same pairs only a over c."""
    from reasoner.search.mcts import _pairs

    tree = SearchTree.start(Problem("p", "arith", "Q", "7"), "Q:", [1, 2])
    a = tree.add(0, "The answer is 7.", [3], -1.0, terminal=True)
    b = tree.add(0, "3 + 4 = 7\n", [4], -1.0, terminal=False)
    c = tree.add(0, "The answer is 9.", [5], -1.0, terminal=True)
    for node, value in ((a, 1.0), (b, 0.5), (c, 0.0)):
        tree.backup(node, value)
    got = [(p.chosen, p.rejected, p.weight) for p in _pairs(tree, 0.0)]
    assert got == [
        ("The answer is 7.", "3 + 4 = 7\n", 0.5),
        ("The answer is 7.", "The answer is 9.", 1.0),
        ("3 + 4 = 7\n", "The answer is 9.", 0.5),
    ]
    assert [(p.chosen, p.rejected) for p in _pairs(tree, 0.0, same_kind=True)] == [
        ("The answer is 7.", "The answer is 9.")
    ]
    assert len(_pairs(tree, 0.6)) == 1  # the margin still applies: only a over c differs by 0.6+


def test_dirichlet_noise_has_dirichlets_moments_even_for_a_small_alpha():
    """Dir(alpha) over n children: each share has mean 1/n and variance (1/n)(1 - 1/n)/(n alpha + 1).
    alpha = 0.01 once came out uniform (every float32 gamma draw underflowed to the same value)."""
    import torch

    from reasoner.search.mcts import _dirichlet

    gen = torch.Generator().manual_seed(0)
    for alpha in (0.01, 0.3, 1000.0):
        draws = torch.stack([_dirichlet(3, alpha, gen) for _ in range(4000)])
        assert torch.allclose(draws.sum(1), torch.ones(4000, dtype=draws.dtype))
        assert draws.mean(0).tolist() == pytest.approx([1 / 3] * 3, abs=0.03)
        assert draws[:, 0].var().item() == pytest.approx((1 / 3) * (2 / 3) / (3 * alpha + 1), rel=0.1, abs=1e-5)
