"""Process-reward algorithms against hand-computed numbers."""

import math
import random

import pytest
import torch

from reasoner.rewards import implicit, judge_rules, shaping
from reasoner.rewards.mc import labels_from_counts
from reasoner.search.puct import priors_from_logprobs, puct_scores, select
from reasoner.stepeval import every_step_wrong, first_error, first_error_f1, predicted_first_error, step_accuracy


def test_clip_by_hand():
    r = torch.tensor([[0.5, -0.2, 0.1, 9.0]])
    m = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    # eta 0.3: 0.5-0.3=0.2 -> 0; -0.2-0.3=-0.5; 0.1-0.3=-0.2; padding -> 0
    assert shaping.clip(r, m, eta=0.3)[0].tolist() == pytest.approx([0.0, -0.5, -0.2, 0.0])


def test_delta_by_hand_and_against_the_loop():
    r = torch.tensor([[0.9, 0.6, 0.8, 0.0]])
    m = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    # 0.9-0.6=0.3, 0.6-0.8=-0.2, last kept 0.8; sum = 0.9 = first reward
    assert shaping.delta(r, m)[0].tolist() == pytest.approx([0.3, -0.2, 0.8, 0.0])
    rng = random.Random(0)
    for _ in range(20):
        n = rng.randint(1, 7)
        row = [rng.uniform(-1, 1) for _ in range(n)]
        padded = torch.tensor([row + [0.0] * (8 - n)])
        mask = torch.tensor([[1.0] * n + [0.0] * (8 - n)])
        assert shaping.delta(padded, mask)[0, :n].tolist() == pytest.approx(shaping.delta_loop(row), abs=1e-6)


def test_repeating_a_correct_step_gains_no_summed_reward():
    # A PRM that likes a correct step gives it 0.8 every time it appears.
    honest = [0.8, 0.7, 0.9]
    farming = [0.8, 0.8, 0.8, 0.8, 0.8, 0.7, 0.9]  # the first step repeated four more times
    raw = (sum(honest), sum(farming))
    assert raw[1] > raw[0]  # unshaped, repetition pays
    d = [sum(shaping.delta_loop(x)) for x in (honest, farming)]
    assert d[0] == pytest.approx(0.8) and d[1] == pytest.approx(0.8)  # telescopes to the first step
    c = [shaping.clip(torch.tensor([x]), torch.ones(1, len(x)), eta=0.85).sum().item() for x in (honest, farming)]
    assert c[1] <= c[0]  # clipped rewards are <= 0, extra steps can only cost


def test_implicit_rewards_on_four_tokens():
    # log-prob ratios per token: 0.5, -1.0, 0.25, 0.75; beta 0.1 -> 0.05, -0.1, 0.025, 0.075
    pol = torch.tensor([[-1.0, -3.0, -0.75, -0.25]])
    ref = torch.tensor([[-1.5, -2.0, -1.0, -1.0]])
    tok = implicit.token_rewards(pol, ref, torch.ones(1, 4), beta=0.1)
    assert tok[0].tolist() == pytest.approx([0.05, -0.1, 0.025, 0.075])
    # steps end after tokens 2 and 4: 0.05-0.1=-0.05 and 0.025+0.075=0.1; outcome 0.05
    assert implicit.step_rewards(tok, [[2, 4]]) == [pytest.approx([-0.05, 0.1])]
    outcome = tok.sum(-1)
    loss = implicit.outcome_loss(outcome, torch.tensor([1.0]))
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-0.05))))


def test_mc_labels_by_hand():
    hard, soft = labels_from_counts([4, 1, 0], 4)
    assert hard == [1.0, 1.0, 0.0] and soft == [1.0, 0.25, 0.0]
    with pytest.raises(ValueError):
        labels_from_counts([1], 0)


def test_stepwiser_rules_by_hand():
    q0, q = 0.5, [0.5, 0.25, 0.0, 0.0]
    assert judge_rules.absolute(q, q0, tau=0.0) == [True, True, False, False]
    # ratios 1.0, 0.5, 0.0, then a step from Q=0 stays hopeless
    assert judge_rules.ratio(q, q0, tau=0.8) == [True, False, False, False]
    # differences 0, -0.25, -0.25, 0
    assert judge_rules.difference(q, q0, tau=0.1) == [True, False, False, True]


def test_puct_choice_on_a_three_node_tree():
    # parent visited 4 times; children: (Q, N, P) = (0.5, 2, 0.2), (0.3, 1, 0.5), (0.0, 0, 0.3); c = 1
    # scores: 0.5 + 0.2*2/3 = 0.6333; 0.3 + 0.5*2/2 = 0.8; 0 + 0.3*2/1 = 0.6
    scores = puct_scores(
        torch.tensor([0.5, 0.3, 0.0]), torch.tensor([2.0, 1, 0]), torch.tensor([0.2, 0.5, 0.3]), 4, 1.0
    )
    assert scores.tolist() == pytest.approx([0.6333333, 0.8, 0.6])
    assert select([0.5, 0.3, 0.0], [2, 1, 0], [0.2, 0.5, 0.3], 4, 1.0) == 1
    # with little exploration the best value wins
    assert select([0.5, 0.3, 0.0], [2, 1, 0], [0.2, 0.5, 0.3], 4, 0.1) == 0


def test_priors_are_length_normalised():
    p = priors_from_logprobs([-2.0, -4.0], [2, 4])  # both -1 per token
    assert p == pytest.approx([0.5, 0.5])


def test_first_error_f1_by_hand():
    gold_labels = [[True, False, True], [True, True], [False], [True]]
    gold = [first_error(x) for x in gold_labels]
    assert gold == [1, -1, 0, -1]
    pred = [predicted_first_error(s, 0.5) for s in ([0.9, 0.2, 0.9], [0.9, 0.1], [0.9], [0.8])]
    assert pred == [1, 1, -1, -1]
    # erroneous: 1 of 2 right (0.5); correct: 1 of 2 right (0.5); F1 = 0.5
    got = first_error_f1(gold, pred)
    assert got["error_acc"] == 0.5 and got["correct_acc"] == 0.5 and got["f1"] == pytest.approx(0.5)
    acc = step_accuracy(gold_labels, [[0.9, 0.2, 0.9], [0.9, 0.1], [0.9], [0.8]], 0.5)
    assert acc == pytest.approx(5 / 7)


def test_the_floor_is_the_labeller_that_calls_every_step_wrong():
    gold = [[True, False, True], [True, True], [False], [True], [None, None], [None, False]]
    # it predicts each first checkable step: 0, 0, 0, 0, none, 1; the gold's first errors: 1, -1, 0, -1, -1, 1
    got = every_step_wrong(gold)
    # erroneous: 2 of 3 right (steps 0 and 1 of the last two); correct: only the uncheckable one (1 of 3)
    assert got["error_acc"] == pytest.approx(2 / 3) and got["correct_acc"] == pytest.approx(1 / 3)
    assert got["f1"] == pytest.approx(4 / 9) and got["uncheckable"] == 1
    assert got["n_error"] == 3 and got["n_correct"] == 3
    # a policy writing only uncheckable prose or one wrong step: the floor is perfect
    assert every_step_wrong([[None], [False], [None, None], [False, None]])["f1"] == 1.0


def test_first_error_skips_steps_the_gold_cannot_check():
    gold = [None, True, False]  # a narrative step, a right one, a wrong one
    assert first_error(gold) == 2
    assert predicted_first_error([0.1, 0.9, 0.2], 0.5, gold) == 2  # the low score on step 0 is not counted
    assert predicted_first_error([0.1, 0.9, 0.2], 0.5) == 0
    assert predicted_first_error([0.1, 0.3, 0.2], 0.5, gold) == 1
