"""B-STaR's balance (arXiv 2412.17256): the score by hand, the choice, and a run through iterate
whose second iteration samples at the temperature the first one's balance phase chose."""

import json

import pytest
from typer.testing import CliRunner

from reasoner.balance import Response, balance_score, choose, exploitation, exploration, quantile
from reasoner.cli import app


def _r(q, text, ok, score=0.0):
    return Response(q, text, ok, score)


def test_balance_score_by_hand():
    rs = [_r("a", "x", True, 0.9), _r("a", "x", True, 0.8), _r("a", "y", False, 0.1), _r("b", "z", False, 0.7)]
    # threshold 0: a: s=3, c=1 distinct correct -> min(1/2, 1) * 1/3 = 1/6; b: s=1, c=0 -> 0; mean 1/12
    assert balance_score(rs, 0.0, target=2) == pytest.approx(1 / 12)
    # threshold 0.75: a: s=2 (x, x), c=1 -> 1/2 * 1/2 = 1/4; b: nothing passes -> 0; mean 1/8
    assert balance_score(rs, 0.75, target=2) == pytest.approx(1 / 8)
    assert exploitation(rs, 0.75) == 1.0 and exploitation(rs, 0.0) == 0.5
    assert exploration(rs) == {"pass_at_k": 0.5, "distinct_correct": 0.5}
    assert quantile([3.0, 1.0, 2.0, 4.0], 0.5) == 3.0 and quantile([3.0, 1.0], 0.0) == 1.0


def test_choose_prefers_the_temperature_with_more_distinct_correct_answers():
    cold = [_r("a", "x", True)] * 4  # one distinct correct answer, repeated
    hot = [_r("a", "x", True), _r("a", "y", True), _r("a", "z", False), _r("a", "w", True)]
    temperature, threshold, table = choose({0.5: cold, 1.1: hot}, [0.0], target=4)
    # cold: min(1/4, 1) * 1/4 = 1/16; hot: min(3/4, 1) * 3/4 = 9/16
    assert (temperature, threshold) == (1.1, 0.0) and [row["balance"] for row in table] == [1 / 16, 9 / 16]


@pytest.mark.slow
def test_balance_phase_sets_the_next_iterations_temperature(tmp_path):
    sets = [
        "model.policy=tiny",
        "run.iterations=2",
        "run.baseline_eval=false",
        "task.train_size=2",
        "task.test_size=2",
        "task.prompt=zeroshot",
        "generate.samples=2",
        "generate.max_new_tokens=8",
        "generate.temperature=0.8",
        "train.policy.max_steps=1",
        "evaluate.k=0",
        "evaluate.max_new_tokens=4",
        "balance.enabled=true",
        "balance.probe_size=3",
        "balance.samples=2",
        "balance.temperatures=[0.3, 1.7]",
        'label.labellers=["mc"]',
        "label.mc_samples=2",
        "label.mc_max_new_tokens=4",
        "balance.reward=mc",
        "balance.quantiles=[0.0, 0.5]",
    ]
    run = tmp_path / "r"
    result = CliRunner().invoke(app, ["iterate", "--run", str(run), *[x for s in sets for x in ("--set", s)]])
    assert result.exit_code == 0, result.output
    plan = json.loads((run / "iter_0001" / "balance.json").read_text())["plan"]
    assert plan["temperature"] in (0.3, 1.7) and plan["reward"] == "mc"
    table = json.loads((run / "iter_0001" / "balance.json").read_text())["table"]
    assert [(row["temperature"], row["quantile"]) for row in table] == [(0.3, 0.0), (0.3, 0.5), (1.7, 0.0), (1.7, 0.5)]
    assert plan["threshold"] in {row["threshold"] for row in table}
    manifest = json.loads((run / "manifest.json").read_text())["iterations"]
    assert manifest["1"]["generate"]["metrics"]["temperature"] == 0.8  # the config's, before any balance
    assert manifest["2"]["generate"]["metrics"]["temperature"] == plan["temperature"]
    assert manifest["1"]["balance"]["metrics"]["next_temperature"] == plan["temperature"]
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(e.get("phase") == "balance" and "balance" in e for e in events)
    from reasoner.run import RunDir

    saved = RunDir(run).saved_config()  # the plan is an artefact; the saved config is as written
    assert saved.generate.temperature == 0.8 and not RunDir(run).manifest()["config_changes"]
