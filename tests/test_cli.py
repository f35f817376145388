import json

import pytest
from typer.testing import CliRunner

from reasoner.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--set", "task.pack=gsm9k"], "unknown task pack 'gsm9k'"),
        (["--set", "train.epochs"], "expected section.key=value"),
        (["--set", "train.epoch=2"], "unknown key train.epoch"),
        (["--config", "missing.toml"], "missing.toml does not exist"),
        (["--set", "generate.searcher=dfs"], "unknown searcher 'dfs'; valid: beam, best_of_n, mcts"),
        (["--set", "model.policy=./no/such/folder"], "does not exist"),
        (["--set", "task.pack=gsm8k"], "needs task.source"),
    ],
)
def test_bad_input_exits_2_with_a_message(tmp_path, args, fragment):
    result = runner.invoke(app, ["iterate", "--run", str(tmp_path / "r"), *args])
    assert result.exit_code == 2, result.output
    assert fragment in " ".join(result.output.split())


def test_unknown_pack_writes_no_run(tmp_path):
    runner.invoke(app, ["iterate", "--run", str(tmp_path / "r"), "--set", "task.pack=nope"])
    assert not (tmp_path / "r").exists()


TINY = [
    "--set",
    "model.policy=tiny",
    "--set",
    "run.iterations=1",
    "--set",
    "run.baseline_eval=false",
    "--set",
    "task.train_size=2",
    "--set",
    "task.test_size=2",
    "--set",
    "generate.samples=2",
    "--set",
    "generate.max_new_tokens=4",
    "--set",
    "evaluate.k=0",
    "--set",
    "evaluate.max_new_tokens=4",
    "--set",
    "task.prompt=zeroshot",
]


def test_phase_commands_read_the_previous_phase(tmp_path):
    run = str(tmp_path / "r")
    result = runner.invoke(app, ["verify", "--run", run, *TINY])
    assert result.exit_code == 2 and "problems.jsonl is missing: run the phase that writes it first" in " ".join(
        result.output.split()
    )
    assert not (tmp_path / "r").exists()  # the refused command left no run behind
    assert runner.invoke(app, ["generate", "--run", run, *TINY]).exit_code == 0
    assert runner.invoke(app, ["verify", "--run", run]).exit_code == 0
    rollouts = (tmp_path / "r" / "iter_0001" / "rollouts.jsonl").read_text().splitlines()
    assert len(rollouts) == 4 and all(json.loads(line)["correct"] is not None for line in rollouts)
    listing = runner.invoke(app, ["runs", "--root", str(tmp_path)])
    assert "done" in listing.output and "│ -" in listing.output


def test_resuming_with_a_changed_config_is_refused(tmp_path):
    run = str(tmp_path / "r")
    assert runner.invoke(app, ["generate", "--run", run, *TINY]).exit_code == 0
    cfg = tmp_path / "other.toml"
    cfg.write_text("[train]\nepochs = 9\n")
    result = runner.invoke(app, ["iterate", "--run", run, "--config", str(cfg), *TINY])
    assert result.exit_code == 2 and "train.policy.epochs: 1 -> 9" in " ".join(result.output.split())


def test_report_writes_a_plot(tmp_path):
    run = str(tmp_path / "r")
    assert runner.invoke(app, ["iterate", "--run", run, *TINY]).exit_code == 0
    out = tmp_path / "plot.svg"
    result = runner.invoke(app, ["report", "--run", run, "--plot", str(out)])
    assert result.exit_code == 0 and "pass@1" in result.output
    assert out.read_text().startswith("<svg") and "polyline" in out.read_text()


def test_grade_writes_verdicts_and_a_summary(tmp_path):
    src = tmp_path / "preds.jsonl"
    lines = [
        {"prediction": "so the answer is \\boxed{\\frac{1}{2}}", "gold": "0.5"},
        {"prediction": "12 or 13", "gold": "12", "pack": "gsm8k"},
        {"prediction": "The answer is 7.", "gold": "8", "pack": "arith"},
    ]
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["grade", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["verdict"] for r in rows] == ["correct", "incorrect", "incorrect"]
    assert rows[1]["reason"].startswith("hedged") and rows[0]["answer"] == "\\frac{1}{2}"
    assert "gsm8k" in result.output and "verdicts" in result.output


def test_grade_bad_line_names_file_line_field_and_keeps_earlier_output(tmp_path):
    src = tmp_path / "preds.jsonl"
    out = tmp_path / "out.jsonl"
    out.write_text("earlier results\n")
    src.write_text('{"prediction": "1", "gold": "1"}\n{"prediction": 1, "gold": "1"}\n')
    result = runner.invoke(app, ["grade", str(src), "--out", str(out)])
    assert result.exit_code == 2
    assert f"{src}:2: field 'prediction'" in " ".join(result.output.split())
    assert out.read_text() == "earlier results\n"


def test_judge_filter_drops_samples_with_a_bad_step(tmp_path):
    import reasoner.trainphases as tp
    from reasoner import config as cfg
    from reasoner.phases import Session
    from reasoner.records import StepLabels, Trajectory
    from reasoner.run import RunDir

    conf = cfg.apply_overrides(cfg.Config(), ["model.policy=tiny", 'label.labellers=["judge"]'])
    rd = RunDir(tmp_path / "r")
    rd.open(conf)
    rd.write_records(1, "labels.jsonl", [StepLabels("a", "judge", [1.0, 0.75]), StepLabels("b", "judge", [1.0, 0.25])])
    trajs = [Trajectory(x, "p", "", ["s1", "s2"], "t", correct=True) for x in ("a", "b", "c")]
    kept = tp._filter(Session(rd, conf), 1, trajs, "judge")
    assert [t.id for t in kept] == ["a", "c"]  # b has a step at 0.25 < 0.5; c was not judged


def test_set_on_evaluate_steps_leaves_the_run_config_alone(tmp_path):
    from reasoner import config as cfg
    from reasoner.cli import open_run
    from reasoner.run import RunDir

    run = tmp_path / "r"
    RunDir(run).open(cfg.load(None))
    before = (run / "config.toml").read_bytes()
    _, conf = open_run(str(run), None, ['label.labellers=["mc"]'], record=False)
    assert conf.label.labellers == ["mc"]  # this evaluation uses the override
    assert (run / "config.toml").read_bytes() == before  # later iterations do not
    assert RunDir(run).saved_config().label.labellers != ["mc"]
