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


def _t(tid, pid, text, correct):
    from reasoner.records import Trajectory

    return Trajectory(tid, pid, "Q:", [text], text, correct=correct)


def test_ranked_pairs_take_the_current_rewards_first_and_last_with_the_verifier_breaking_ties():
    from reasoner.training.objectives.cream import ranked_pairs

    ts = [_t("a", "p", "1", False), _t("b", "p", "2", True), _t("c", "p", "3", False), _t("d", "p", "3", True)]
    ts += [_t("e", "q", "7", True), _t("f", "q", "8", False), _t("g", "r", "9", True), _t("h", "r", "9", True)]
    current = {"a": 0.9, "b": 0.1, "c": 0.5, "d": 0.0, "e": 0.0, "f": 0.0, "g": 1.0, "h": 2.0}
    previous = {"a": 0.1, "b": 0.9, "c": 0.5}  # p's ranking reversed: a > c > b now, b > c > a before
    got = {good.problem_id: (good.id, bad.id, c) for good, bad, c in ranked_pairs(ts, current, previous)}
    # p: a ranks first, b last (d repeats c's text, so c stands for both); tau = -1 -> C = 0
    assert got["p"] == ("a", "b", 0.0)
    # q: the reward ties both, the verifier decides; the tie leaves tau undefined -> C = 1
    assert got["q"] == ("e", "f", 1.0)
    assert "r" not in got  # one distinct text: no pair


@pytest.mark.slow
def test_cream_runs_through_iterate_and_softens_pairs_the_two_rewards_disagree_on(tmp_path):
    from tinyrun import TINY_SAMPLES, as_sets
    from typer.testing import CliRunner

    from reasoner.cli import app

    config = __import__("pathlib").Path(__file__).resolve().parents[1] / "configs" / "cream.toml"
    keys = [*TINY_SAMPLES, "train.policy.micro_batch_size=1", "train.policy.batch_size=2",
            "train.reward.micro_batch_size=1", "train.reward.batch_size=2"]  # fmt: skip
    run = tmp_path / "r"
    result = CliRunner().invoke(app, ["iterate", "--run", str(run), "--config", str(config), *as_sets(keys)])
    assert result.exit_code == 0, result.output
    events = [__import__("json").loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [e for e in events if e.get("phase") == "train" and "consistency_sum" in e]
    by_iter = {}
    for e in steps:
        by_iter.setdefault(e["iteration"], []).append(e["consistency_sum"] / 2)  # 2 pairs a step
    # iterations 1 and 2 compare against an untrained PRM (all zeros): C = 1; by 3 the trained
    # PRMs of iterations 1 and 2 disagree on some prompt
    assert all(c == 1.0 for c in by_iter[1] + by_iter[2])
    assert min(by_iter[3]) < 1.0
    assert (run / "iter_0003" / "reward" / "model.safetensors").exists()
    bad = CliRunner().invoke(app, ["iterate", "--run", str(tmp_path / "x"), "--config", str(config),
                                   *as_sets([*keys, 'label.labellers=["mc"]'])])  # fmt: skip
    assert bad.exit_code == 2 and "train.rank_by = 'implicit'" in " ".join(bad.output.split())
