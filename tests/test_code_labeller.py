"""The `code` labeller: claims read from a step's text, run in the sandbox, and the default
recipe (configs/default.toml, rft-code) that selects training samples by them."""

import json

from tinyrun import TINY_SAMPLES, Scripted, as_sets, train_answers
from typer.testing import CliRunner

from reasoner.cli import app
from reasoner.config import LabelConfig, ToolsConfig
from reasoner.generation import BACKENDS

runner = CliRunner()


def test_claims_are_the_computable_equations_of_a_step():
    from reasoner.rewards.code import claims, step_scores

    assert claims("4 + 3 = 7, and 2 x (3 + 1) = 8 pens") == [("4 + 3", 7.0), ("2 * ( 3 + 1 )", 8.0)]
    assert claims("$1,200 / 4 = $300") == [("1200 / 4", 300.0)]
    assert claims("2^3 = 8") == [("2 ** 3", 8.0)] and claims("48/2=24") == [("48 / 2", 24.0)]
    assert claims("x = 5") == [] and claims("The answer is 5.") == [] and claims("12 = 12") == []
    assert claims("2 + 3 = 5 + 0 = 5") == [("5 + 0", 5.0)]  # a chain: only its last link is whole
    assert claims("```python\nx = 6 * 7\nprint(x)\n```") == []  # an assignment is not a claim
    # unit words between the numbers (the embedded model's arith slips; GSM8K's solutions)
    assert claims("8 books - 4 books = 2 books") == [("8 - 4", 2.0)]
    assert claims("There are 60 students x 2/3 = 40 students") == [("60 * 2 / 3", 40.0)]
    assert claims("240 students – 224 students = 16 students") == [("240 - 224", 16.0)]
    assert claims("3 boxes x 4 = 12") == [("3 * 4", 12.0)] and claims("Max 4 + 3 = 7") == [("4 + 3", 7.0)]
    assert claims("2100*1200=2,520,000 pixels") == [("2100 * 1200", 2520000.0)]  # the whole number
    assert claims("40*.6=24 trees") == [("40 * .6", 24.0)] and claims("$.50-.25 = $.25") == [(".50 - .25", 0.25)]
    # no claim where a piece of an expression would be read as a whole one (a true step would fail)
    assert claims("72 cubic ft * 3/4 = 54 cubic ft") == [("72 * 3 / 4", 54.0)]  # up to two unit words
    assert claims("32 hours watching games + 64 hours = 96") == []  # three: more likely prose than a unit
    assert claims("a total of $20 so 20/4 = $5") == [("20 / 4", 5.0)]  # a number and a word before: no cut
    assert claims("2 dozen - 4 = 20") == [] and claims("3 hundred + 4 = 304") == []  # multipliers: no units
    assert claims("72 cubic feet of water * 3/4 = 54") == []  # left side: the end of a longer one
    assert claims("8 x 1 1/2 = 12 rolls") == [] and claims("3 / 4 * 2 = 1 1/2 feet") == []  # mixed numbers
    assert claims("1/4 cup + 1 and 1/4 cup = 1.5 cups") == []
    assert claims("100/5 = 5A/5") == [] and claims("1/10 = 10%") == [] and claims("4 / 3 = 1 and 1/3") == []
    assert claims("4 W^2 = 100") == []  # a one-letter variable is no unit
    # verdicts in order: [T, F] for a step with two claims, [] for one with none, [None] raised
    assert step_scores([True, False, None], [2, 0, 1]) == [0.0, 1.0, 1.0]
    assert step_scores([True, True], [1, 1]) == [1.0, 1.0]


def test_the_code_labeller_runs_the_claims_in_the_sandbox():
    from reasoner.records import Trajectory
    from reasoner.rewards import get_labeller

    def traj(tid, steps):
        return Trajectory(id=tid, problem_id="p", prompt="", steps=steps, text="\n".join(steps))

    trajs = [
        traj("a", ["4 + 3 = 7", "7 - 2 = 6", "The answer is 6."]),
        traj("b", ["Kim has 4 pens.", "4 x 3 = 12 pens", "12 / 0 = 1"]),  # 1/0 raises: no evidence
        traj("c", ["9^9^9^9 = 1"]),  # runs past the CPU limit: unverifiable, not wrong
        traj("d", []),
        # a value with decimals is read as rounded to them: 2060 / 15 = 137.333...
        traj("e", ["2060 / 15 = 137.33", "2060 / 15 = 137.3", "2060 / 15 = 137.4", "10 / 4 = 2", "10 / 4 = 2.5"]),
    ]
    tools = ToolsConfig(workers=2, cpu_seconds=1, wall_seconds=3.0)
    ctx = type("Ctx", (), {"tools": tools, "settings": LabelConfig()})()
    got = {lab.trajectory_id: lab.labels for lab in get_labeller("code").label(trajs, ctx)}
    assert got == {"a": [1.0, 0.0, 1.0], "b": [1.0, 1.0, 1.0], "c": [1.0], "d": [], "e": [1.0, 1.0, 0.0, 0.0, 1.0]}
    assert get_labeller("code").search_scores(trajs[:2], ctx, 0) == [0.0, 1.0]  # the weakest step
    # label.code_answer: the last step also scores 0 when no claim states the answer
    answered = [Trajectory(id=t, problem_id="p", prompt="", steps=["7 + 3 = 10", f"The answer is {a}."], text="",
                           answer=a) for t, a in (("f", "11"), ("g", "10"))]  # fmt: skip
    ctx.settings = LabelConfig(code_answer=True)
    got = {lab.trajectory_id: lab.labels for lab in get_labeller("code").label([*trajs, *answered], ctx)}
    assert got == {"a": [1.0, 0.0, 1.0], "b": [1.0, 1.0, 1.0], "c": [1.0], "d": [], "e": [1.0, 1.0, 0.0, 0.0, 1.0],
                   "f": [1.0, 0.0], "g": [1.0, 1.0]}  # fmt: skip


def test_evaluate_steps_scores_the_code_labeller_against_gold(tmp_path):
    run = tmp_path / "r"
    sets = [*TINY_SAMPLES, "run.iterations=1"]
    got = runner.invoke(app, ["generate", "--run", str(run), "--iteration", "1", *as_sets(sets)])
    assert got.exit_code == 0, got.output
    out = tmp_path / "r.steps" / "iter_0000"  # the default: beside the run, the iteration evaluated
    asked = ["evaluate", "--steps", "--run", str(run), "--problems", "4", "--samples", "2"]
    got = runner.invoke(app, [*asked, "--set", 'label.labellers=["code", "gold"]'])
    assert got.exit_code == 0, got.output
    summary = json.loads((out / "steps.json").read_text())
    assert {"code", "gold"} <= set(summary["labellers"]) and "f1" in summary["labellers"]["code"]
    rows = [json.loads(r) for r in (out / "steps.jsonl").read_text().splitlines()]
    from reasoner.stepeval import every_step_wrong

    # the floor beside the labellers, on the same solutions, in steps.json and in the printed table
    assert summary["every_step_wrong"] == every_step_wrong([r["gold"] for r in rows])
    assert "floor" in " ".join(got.output.split()) and "every step called wrong" in " ".join(got.output.split())
    assert f"; {summary['every_step_wrong']['uncheckable']} without a step" in " ".join(got.output.split())
    from reasoner import report
    from reasoner.run import RunDir

    series = report.run_series(RunDir(run)).step_f1  # what `reasoner report` plots in step_f1.png
    assert series[report.FLOOR] == [(0, summary["every_step_wrong"]["f1"])] and series["code"][0][0] == 0
    from reasoner.rewards.code import claims

    for r in rows:  # a step without a computable claim scores 1
        assert len(r["scores"]["code"]) == len(r["steps"])
        assert all(sc == 1.0 for st, sc in zip(r["steps"], r["scores"]["code"], strict=True) if not claims(st))


def test_the_label_phase_and_selection_use_the_code_labeller(tmp_path):
    run = tmp_path / "r"
    sets = [*TINY_SAMPLES, "run.iterations=1", 'label.labellers=["code"]', "train.select_by=code"]
    got = runner.invoke(app, ["iterate", "--run", str(run), *as_sets(sets)])
    assert got.exit_code == 0, got.output
    labels = [json.loads(line) for line in (run / "iter_0001" / "labels.jsonl").open()]
    rollouts = {json.loads(line)["id"]: json.loads(line) for line in (run / "iter_0001" / "rollouts.jsonl").open()}
    assert labels and {lab["labeller"] for lab in labels} == {"code"}
    assert all(len(lab["labels"]) == len(rollouts[lab["trajectory_id"]]["steps"]) for lab in labels)


def _default_run_scripted(tmp_path, answer_text, extra=()) -> tuple[list[dict], dict, dict]:
    """One iteration of configs/default.toml whose every sample answers right, in the text
    ``answer_text(answer, call)`` writes; its correct rollouts, labels and train metrics."""
    from pathlib import Path

    default = Path(__file__).resolve().parents[1] / "configs" / "default.toml"
    gold = train_answers()
    calls = iter(range(10_000))

    def script(context: str) -> str:
        return answer_text(next((a for q, a in gold.items() if q in context), "0"), next(calls))

    BACKENDS["scripted-claims"] = lambda spec, device="cpu", settings=None: Scripted(script)
    try:
        run = tmp_path / "r"
        sets = [*TINY_SAMPLES, "run.iterations=1", "generate.backend=scripted-claims", "generate.max_new_tokens=60"]
        got = runner.invoke(app, ["iterate", "--run", str(run), "--config", str(default), *as_sets([*sets, *extra])])
        assert got.exit_code == 0, got.output
    finally:
        del BACKENDS["scripted-claims"]
    rollouts = [json.loads(line) for line in (run / "iter_0001" / "rollouts.jsonl").open()]
    labels = {
        json.loads(line)["trajectory_id"]: json.loads(line)["labels"]
        for line in (run / "iter_0001" / "labels.jsonl").open()
    }
    train = json.loads((run / "manifest.json").read_text())["iterations"]["1"]["train"]["metrics"]
    return [r for r in rollouts if r["correct"]], labels, train


def test_the_default_config_trains_on_correct_samples_whose_claims_hold(tmp_path):
    """configs/default.toml (rft-code): of the correct samples, those with a false arithmetic claim
    are labelled 0 by the sandbox and left out of training; no gold step label is read."""
    # every answer right; every other sample claims 2 + 2 = 5
    correct, labels, train = _default_run_scripted(
        tmp_path, lambda answer, call: f"2 + 2 = {5 if call % 2 else 4}\nThe answer is {answer}."
    )
    true_claims = [r for r in correct if "2 + 2 = 4" in r["text"]]
    assert len(correct) == 32 and 0 < len(true_claims) < len(correct)
    # off by default (label.code_answer): "2 + 2 = 4", "The answer is 7." keeps its last step
    assert all(labels[r["id"]] == [1.0 if "2 + 2 = 4" in r["text"] else 0.0, 1.0] for r in correct)
    assert train["select_scored_correct"] == 32 and train["select_kept_correct"] == len(true_claims)


def test_code_answer_drops_correct_samples_whose_answer_is_not_computed(tmp_path):
    """label.code_answer = true: a correct sample whose claims hold but none of which states its
    answer ("2 + 2 = 4", "The answer is 7.") scores 0 on its last step and is not trained on."""

    def text(answer, call):  # true claims; every other one computes the answer
        return (
            f"{answer} + 0 = {answer}\nThe answer is {answer}." if call % 2 else f"2 + 2 = 4\nThe answer is {answer}."
        )

    correct, labels, train = _default_run_scripted(tmp_path, text, ["label.code_answer=true"])
    follows = [r for r in correct if r["text"].startswith(f"{r['answer']} + 0") or r["answer"] == "4"]
    assert len(correct) == 32 and 0 < len(follows) < len(correct)
    assert all(labels[r["id"]] == [1.0, 1.0 if r in follows else 0.0] for r in correct)
    assert train["select_kept_correct"] == len(follows)


def test_answer_follows_by_hand():
    from reasoner.rewards.code import answer_follows

    assert answer_follows("11", [("7 + 3", 10.0)]) is False and answer_follows("10", [("7 + 3", 10.0)])
    assert answer_follows("$1,200", [("2 * 600", 1200.0), ("1 + 1", 2.0)])  # any claim's value
    assert answer_follows("137.33", [("2060 / 15", 137.33)]) and answer_follows("-2", [("1 - 3", -2.0)])
    assert answer_follows("11", []) and answer_follows(None, [("7 + 3", 10.0)])  # nothing to compare
    assert answer_follows("3/4", [("1 + 1", 2.0)])  # no plain number: no evidence against it
