"""CREAM's pure functions (arXiv 2410.12735) against hand-computed numbers."""

import math

import pytest
import torch

from reasoner.training.objectives.cream import consistency, cream_loss, kendall_tau_b
from reasoner.training.objectives.dpo import dpo_loss


def test_kendall_tau_b_on_hand_made_rankings():
    assert kendall_tau_b([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == -1.0
    # (0,1) (2,3) discordant, the other 4 pairs concordant: (4 - 2) / 6
    assert kendall_tau_b([1, 2, 3, 4], [2, 1, 4, 3]) == pytest.approx(1 / 3)
    # ties: pair (0,1) tied in the first, (1,2) in the second; 4 concordant: 4 / sqrt(5 * 5)
    assert kendall_tau_b([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8)
    # tau-b, not tau-a: ties shrink the denominator, 2 / sqrt(3 * 2)
    assert kendall_tau_b([1, 2, 3], [1, 2, 2]) == pytest.approx(2 / math.sqrt(6))
    assert kendall_tau_b([1, 1, 1], [1, 2, 3]) is None  # no order to agree with
    assert kendall_tau_b([5], [5]) is None
    with pytest.raises(ValueError, match="same items"):
        kendall_tau_b([1, 2], [1])


def test_consistency_maps_tau_to_zero_one():
    assert consistency([1, 2, 3], [1, 2, 3]) == 1.0
    assert consistency([1, 2, 3], [3, 2, 1]) == 0.0
    assert consistency([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.9)
    assert consistency([0, 0], [1, 2]) is None


def test_cream_loss_against_hand_computed_numbers():
    pc, pr = torch.tensor([-1.0, -1.0, -1.0]), torch.tensor([-2.0, -2.0, -2.0])
    rc, rr = torch.full((3,), -1.5), torch.full((3,), -1.5)
    c = torch.tensor([1.0, 0.75, 0.5])
    got = cream_loss(pc, pr, rc, rr, c, beta=1.0)
    forward, backward = math.log1p(math.exp(-1.0)), math.log1p(math.exp(1.0))  # margin +1 and -1
    assert got.tolist() == pytest.approx([forward, 0.75 * forward + 0.25 * backward, (forward + backward) / 2])
    assert got[0].item() == pytest.approx(dpo_loss(pc, pr, rc, rr, 1.0)[0][0].item())  # C = 1 is DPO
    # C = 0 is DPO with the pair reversed
    reversed_ = cream_loss(pc, pr, rc, rr, torch.zeros(3), beta=1.0)
    assert reversed_[0].item() == pytest.approx(backward)
