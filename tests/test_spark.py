"""SPARK (arXiv 2509.22624): auxiliary reward tasks from verified rollouts, the policy as its own
judge in the label phase and for best-of-n, end to end through iterate and evaluate."""

import json
from pathlib import Path

import pytest
from tinyrun import TINY_SAMPLES, as_sets
from typer.testing import CliRunner

from reasoner.cli import app
from reasoner.records import Trajectory
from reasoner.training.objectives.spark import auxiliary_tasks

runner = CliRunner()


def _t(tid, pid, text, correct):
    return Trajectory(tid, pid, "Q:", [text], text, correct=correct)


def test_auxiliary_tasks_follow_the_verifier():
    ts = [_t("p/0", "p", "2 + 2 = 4", True), _t("p/1", "p", "2 + 2 = 5", False), _t("q/0", "q", "1 + 1 = 2", True)]
    ts.append(_t("p/2", "p", "2 + 2 = 5", False))  # a repeated text is drawn once
    questions = {"p": "What is 2 + 2?", "q": "What is 1 + 1?"}
    tasks = auxiliary_tasks(ts, questions, ["pointwise", "pairwise", "reflection"], 10, seed=0)
    kinds = [k for k, _, _ in tasks]
    # 2 correct and 1 wrong distinct sample: 1 of each to judge (balanced); 1 (correct, wrong) pair;
    # 1 wrong solution to correct; in turn
    assert kinds == ["pointwise", "pairwise", "reflection", "pointwise"]
    assert sorted(t for k, _, t in tasks if k == "pointwise") == ["Verdict: BAD", "Verdict: GOOD"]
    for kind, messages, target in tasks:
        shown = messages[-1]["content"]
        if kind == "pointwise":
            assert target == ("Verdict: GOOD" if "= 5" not in shown else "Verdict: BAD")
        elif kind == "pairwise":
            a = shown.split("Solution A:\n")[1].split("\n\nSolution B:")[0]
            assert target == ("Answer: A" if a == "2 + 2 = 4" else "Answer: B")
        else:
            assert "Wrong solution:\n2 + 2 = 5" in shown and target == "2 + 2 = 4"
    assert len(auxiliary_tasks(ts, questions, ["pairwise"], 10, seed=0)) == 1  # no more pairs to draw
    # more wrong samples than right ones: every right one is judged, as many wrong ones at random
    many = [*ts, *(_t(f"r/{i}", "r", f"3 + 3 = {i}", False) for i in range(7, 15))]
    questions["r"] = "What is 3 + 3?"
    drawn = [auxiliary_tasks(many, questions, ["pointwise"], 10, seed=s) for s in (0, 5)]
    for tasks in drawn:
        targets = [t for _, _, t in tasks]
        assert len(tasks) == 4 and targets.count("Verdict: GOOD") == targets.count("Verdict: BAD") == 2
        assert {m[-1]["content"].split("Solution:\n")[1] for _, m, t in tasks if t == "Verdict: GOOD"} == {
            "2 + 2 = 4",
            "1 + 1 = 2",
        }
    assert drawn[0] != drawn[1]  # the seed draws the wrong ones and the order
    with pytest.raises(ValueError, match="pointwise, pairwise, reflection"):
        auxiliary_tasks(ts, questions, ["critique"], 1, seed=0)


@pytest.mark.slow
def test_spark_trains_on_main_and_auxiliary_examples_and_judges_itself(tmp_path):
    config = Path(__file__).resolve().parents[1] / "configs" / "spark.toml"
    keys = [*TINY_SAMPLES, "run.iterations=1", "train.policy.micro_batch_size=1", "train.policy.batch_size=2"]
    run = tmp_path / "r"
    result = runner.invoke(app, ["iterate", "--run", str(run), "--config", str(config), *as_sets(keys)])
    assert result.exit_code == 0, result.output
    rollouts = [json.loads(x) for x in (run / "iter_0001" / "rollouts.jsonl").read_text().splitlines()]
    correct = len({(t["problem_id"], t["text"].strip()) for t in rollouts if t["correct"]})
    train = json.loads((run / "manifest.json").read_text())["iterations"]["1"]["train"]["metrics"]
    assert correct >= 1 and train["examples"] == 2 * correct  # spark_ratio 1: as many auxiliary tasks
    labels = [json.loads(x) for x in (run / "iter_0001" / "labels.jsonl").read_text().splitlines()]
    assert {lab["labeller"] for lab in labels} == {"spark"}
    assert all(len(set(lab["labels"])) <= 1 and lab["labels"][0] == lab["meta"]["solution"] for lab in labels)
    # each solution's P(GOOD): strictly between 0 and 1, and different texts score differently
    text = {t["id"]: t["text"] for t in rollouts}
    scores = {text[lab["trajectory_id"]]: lab["meta"]["solution"] for lab in labels}
    assert all(0.0 < x < 1.0 for x in scores.values()) and len(set(scores.values())) == len(scores) > 1
    # the trained policy ranks its own samples at test time
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {i} plus 1?", "answer": i + 1}) + "\n" for i in range(3)))
    out = tmp_path / "ev"
    args = ["--data", str(data), "--k", "2", "--reward", "spark", "--max-new-tokens", "8", "--out", str(out)]
    result = runner.invoke(app, ["evaluate", "--model", f"{run}@1", *args])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "eval.json").read_text())["best_of_2"]["reward"] == "spark"
    bad = runner.invoke(app, ["iterate", "--run", str(tmp_path / "x"), "--config", str(config),
                              *as_sets([*keys, 'train.spark_tasks=["critique"]'])])  # fmt: skip
    assert bad.exit_code == 2 and "train.spark_tasks: 'critique' is not one of" in bad.output
