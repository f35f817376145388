"""Mutual-Taught (arXiv 2506.06292): the M-step's pairs and loss by hand, the E-step's pairs, and
a run through iterate (the SIGKILL resumes are in test_resume.py)."""

import json
import math
from pathlib import Path

import pytest
import torch
from tinyrun import TINY_SAMPLES, as_sets
from typer.testing import CliRunner

from reasoner.cli import app
from reasoner.records import Trajectory
from reasoner.report import run_series
from reasoner.run import RunDir
from reasoner.training.objectives.mutual import before_after_pairs, bradley_terry_loss
from reasoner.training.selection import pair_accuracy


def _t(tid, pid, text, correct, source="sample"):
    return Trajectory(tid, pid, "Q:", [text], text, correct=correct, source=source)


def test_bradley_terry_loss_by_hand():
    got = bradley_terry_loss(torch.tensor([1.0, 0.0, -2.0]), torch.tensor([0.0, 0.0, 1.0]))
    assert got.tolist() == pytest.approx([math.log1p(math.exp(-1)), math.log(2), math.log1p(math.exp(3))])


def test_after_output_is_preferred_unless_the_verifier_says_otherwise():
    before = [
        _t("p/0", "p", "a", False),
        _t("p/1", "p", "b", True),
        _t("q/0", "q", "c", True),
        _t("r/0", "r", "s", True),
    ]
    after = [
        _t("p/after0", "p", "d", False, "after"),  # both wrong: the after-output is preferred
        _t("p/after1", "p", "e", False, "after"),  # before right, after wrong: before preferred
        _t("q/after0", "q", "c", True, "after"),  # the same text: no pair
        _t("r/after0", "r", "t", True, "after"),  # both right: after preferred
    ]
    got = [(g.id, b.id) for g, b in before_after_pairs(before, after)]
    assert got == [("p/after0", "p/0"), ("p/1", "p/after1"), ("r/after0", "r/0")]


@pytest.mark.slow
def test_mutual_taught_runs_through_iterate_and_the_m_step_feeds_the_next_label_phase(tmp_path):
    config = Path(__file__).resolve().parents[1] / "configs" / "mutual.toml"
    keys = [*TINY_SAMPLES, "run.iterations=2", "train.policy.micro_batch_size=1", "train.policy.batch_size=2",
            "train.reward.micro_batch_size=1", "train.reward.batch_size=2"]  # fmt: skip
    run = tmp_path / "r"
    result = CliRunner().invoke(app, ["iterate", "--run", str(run), "--config", str(config), *as_sets(keys)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((run / "manifest.json").read_text())["iterations"]
    m = manifest["1"]["mstep"]
    assert m["status"] == "complete" and m["artefacts"] == ["iter_0001/after.jsonl", "iter_0001/reward"]
    assert m["metrics"]["pairs"] >= 1 and m["metrics"]["examples"] > m["metrics"]["pairs"]
    after = [json.loads(x) for x in (run / "iter_0001" / "after.jsonl").read_text().splitlines()]
    assert len(after) == 2 * 8 and all(t["source"] == "after" and t["correct"] is not None for t in after)
    # iteration 2's label phase scored with the PRM the M-step of iteration 1 trained
    labels = [json.loads(x) for x in (run / "iter_0002" / "labels.jsonl").read_text().splitlines()]
    assert any(v != 0.0 for lab in labels for v in lab["labels"])  # an untrained PRM scores all 0
    # the label phase logs how often its PRM puts a problem's correct sample above its wrong ones:
    # at iteration 1 the untrained PRM (the reference itself) scores every step 0, all ties, a coin
    label = manifest["1"]["label"]["metrics"]
    rows = [json.loads(x) for x in (run / "iter_0001" / "rollouts.jsonl").read_text().splitlines()]
    scored = [(r["problem_id"], r["correct"], min(r["step_rewards"]["implicit"])) for r in rows]
    assert (label["implicit_pair_accuracy_min"], label["implicit_pairs"]) == pair_accuracy(scored)
    assert label["implicit_pairs"] >= 1 and label["implicit_pair_accuracy_sum"] == 0.5
    series = run_series(RunDir(run)).rewards  # what `reasoner report` draws in rewards.png
    assert series["implicit pair accuracy (min)"][0] == (1, 0.5)
    bad = CliRunner().invoke(app, ["iterate", "--run", str(tmp_path / "x"), "--config", str(config),
                                   *as_sets([*keys, 'label.labellers=["mc"]'])])  # fmt: skip
    assert bad.exit_code == 2 and "train.rank_by = 'implicit'" in " ".join(bad.output.split())
