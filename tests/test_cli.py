import json

import pytest
from tinyrun import TINY_SAMPLES, as_sets
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
        (["--set", "run.recipe=ppo"], "unknown recipe 'ppo'; valid: cream, mutual, prime, prm, rft, spark"),
        (["--set", "train.policy.objective=implicit_prm"], "trains reward, not the policy"),
        (["--set", "search.beam_scorer=mc"], "search.beam_scorer = 'mc': that labeller cannot score partial solutions"),
        (["--set", "label.shaping=square"], "unknown shaper 'square'; valid: clip, delta, none"),
        (["--set", "generate.dtype=fp8"], "generate.dtype = 'fp8'; valid: auto, float32, bfloat16, float16"),
        (["--set", "evaluate.every=0"], "evaluate.every must be >= 1"),
        (["--set", "label.code_answer=true"], "label.code_answer checks the code labeller's answers, but"),
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


def test_runs_piped_into_a_file_keeps_its_table_whole(tmp_path):
    """Rich draws 80 columns where stdout is no terminal; `reasoner runs > status.txt` cut its
    phase columns to "gen…". Piped, the table is as wide as its content."""
    import os
    import subprocess
    import sys

    name = "a-long-run-name-as-ablations-get-them-lr2e-4-epochs2-seed1"
    run = tmp_path / name
    assert runner.invoke(app, ["generate", "--run", str(run), *TINY]).exit_code == 0
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    cmd = [sys.executable, "-m", "reasoner.cli", "runs", "--root", str(tmp_path)]
    table = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    lines = table.splitlines()
    assert any(f"{name} (rft)" in line and "done" in line for line in lines), table
    assert all(w in table for w in ("generate", "verify", "evaluate")) and "…" not in table


def test_evaluate_every_skips_evaluations_that_the_evaluate_command_still_runs(tmp_path):
    run = tmp_path / "r"
    keys = [*TINY, "--set", "run.iterations=3", "--set", "run.baseline_eval=true", "--set", "evaluate.every=2"]
    assert runner.invoke(app, ["iterate", "--run", str(run), *keys]).exit_code == 0
    evaluated = sorted(p.parent.name for p in run.glob("iter_*/eval.json"))
    assert evaluated == ["iter_0000", "iter_0002", "iter_0003"]  # 1 skipped; the last always scored
    manifest = json.loads((run / "manifest.json").read_text())["iterations"]
    assert all("train" in manifest[k] for k in "123") and "evaluate" not in manifest["1"]
    listing = json.loads(runner.invoke(app, ["runs", "--root", str(tmp_path), "--json"]).output)
    assert listing[0]["evaluated"] == [2, 3]
    table = runner.invoke(app, ["runs", "--root", str(tmp_path)]).output
    assert "│ -" not in table  # the skipped evaluation is not shown as pending
    # the evaluate command acts on the last iteration (done); asked, it scores the skipped one
    result = runner.invoke(app, ["evaluate", "--run", str(run)])
    assert result.exit_code == 0 and "already complete" in result.output
    result = runner.invoke(app, ["evaluate", "--run", str(run), "--iteration", "1"])
    assert result.exit_code == 0, result.output
    assert (run / "iter_0001" / "eval.json").exists()
    assert runner.invoke(app, ["iterate", "--run", str(run)]).exit_code == 0  # resuming finds nothing to do


def test_resuming_with_a_changed_config_is_refused(tmp_path):
    run = str(tmp_path / "r")
    assert runner.invoke(app, ["generate", "--run", run, *TINY]).exit_code == 0
    cfg = tmp_path / "other.toml"
    cfg.write_text("[train]\nepochs = 9\n")
    result = runner.invoke(app, ["iterate", "--run", run, "--config", str(cfg), *TINY])
    assert result.exit_code == 2 and "train.policy.epochs: 1 -> 9" in " ".join(result.output.split())


def test_report_writes_markdown_and_pngs_and_compares_runs(tmp_path, monkeypatch):
    from PIL import Image

    from reasoner import plots

    runs = [str(tmp_path / "r"), str(tmp_path / "r2")]
    keys = as_sets([*TINY_SAMPLES, "run.report_to=none"])  # 3 iterations that train
    assert runner.invoke(app, ["iterate", "--run", runs[0], *keys]).exit_code == 0
    assert runner.invoke(app, ["iterate", "--run", runs[1], *keys, "--set", "run.seed=4"]).exit_code == 0
    out = tmp_path / "rep"
    result = runner.invoke(app, ["report", "--run", runs[0], "--out", str(out)])
    assert result.exit_code == 0 and "pass@1" in result.output
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["accuracy.png", "loss.png", "rewards.png"]  # no step F1, no B-STaR in this run
    for name in pngs:
        with Image.open(out / name) as im:
            assert im.size == (int(plots.WIDTH * plots.DPI), int(plots.HEIGHT * plots.DPI))
    md = (out / "report.md").read_text()
    assert "| r | " in md and "[accuracy.png](accuracy.png)" in md and "greedy pass@1" in md
    assert "step_f1.png: not drawn" in md
    # two runs overlaid: one legend entry per run in the same figures
    both = tmp_path / "both"
    result = runner.invoke(app, ["report", "--compare", runs[0], "--compare", runs[1], "--out", str(both)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in both.glob("*.png")) == pngs
    md = (both / "report.md").read_text()
    assert "| r | " in md and "| r2 | " in md and "r2 train:" in md
    # without matplotlib the markdown still says what the figures would show
    monkeypatch.setattr(plots, "available", lambda: False)
    bare = tmp_path / "bare"
    result = runner.invoke(app, ["report", "--run", runs[0], "--out", str(bare)])
    assert result.exit_code == 0 and not list(bare.glob("*.png"))
    text = (bare / "report.md").read_text()
    assert "- accuracy.png: held-out greedy pass@1" in text and "pip install" in text
    assert runner.invoke(app, ["report"]).exit_code == 2


def test_metrics_go_to_tensorboard_when_asked(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "r"
    result = runner.invoke(app, ["iterate", "--run", str(run), *as_sets([*TINY_SAMPLES, "run.report_to=tensorboard"])])
    assert result.exit_code == 0, result.output
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "train/loss" in tags and "evaluate/pass@1" in tags
    logged = [e for e in json.loads("[" + ",".join((run / "metrics.jsonl").read_text().splitlines()) + "]")
              if e.get("phase") == "train" and "loss" in e]  # fmt: skip
    assert [round(s.value, 5) for s in acc.Scalars("train/loss")] == [round(e["loss"], 5) for e in logged]
    off = tmp_path / "off"
    assert runner.invoke(app, ["iterate", "--run", str(off), *TINY, "--set", "run.report_to=none"]).exit_code == 0
    assert not (off / "tensorboard").exists()
    bad = runner.invoke(app, ["iterate", "--run", str(tmp_path / "x"), *TINY, "--set", "run.report_to=wandb"])
    assert bad.exit_code == 2 and "run.report_to must be one of auto, tensorboard, none" in bad.output


def test_grade_writes_verdicts_and_a_summary(tmp_path):
    src = tmp_path / "preds.jsonl"
    lines = [
        {"prediction": "so the answer is \\boxed{\\frac{1}{2}}", "gold": "0.5"},
        {"prediction": "12 or 13", "gold": "12", "pack": "gsm8k"},
        {"prediction": "The answer is 7.", "gold": "8", "pack": "arith"},
        {"prediction": "So the total is 42 dollars.", "gold": 42},  # a one-line sentence, a numeric gold
        {"prediction": "The answer is 145 apples, as counted.", "gold": 145.0},
        {"prediction": "either 4 or 5", "gold": "5"},
        {"prediction": "No.", "gold": False},  # StrategyQA stores its golds as booleans
        {"prediction": "The answer is yes.", "gold": False},
    ]
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["grade", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    verdicts = ["correct", "incorrect", "incorrect", "correct", "correct", "incorrect", "correct", "incorrect"]
    assert [r["verdict"] for r in rows] == verdicts
    assert rows[3]["answer"] == "42" and rows[4]["answer"] == "145 apples"
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


def test_grade_stops_with_exit_2_when_the_symbolic_checker_cannot_run(tmp_path, monkeypatch):
    """A parser package that does not import (seen on a GPU image without latex2sympy2_extended)
    used to leave every sympy-bound answer "unverifiable" while the job went on scoring."""
    import sys

    from reasoner.verifiers import pool

    broken = tmp_path / "site" / "latex2sympy2_extended"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('planted: this package is broken')\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "site"), *sys.path])  # spawned workers get it too
    monkeypatch.setattr(pool, "_POOL", None)
    src = tmp_path / "preds.jsonl"
    src.write_text('{"prediction": "\\\\boxed{2\\\\sqrt{2}}", "gold": "\\\\sqrt{8}", "pack": "math"}\n')
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["grade", str(src), "--out", str(out)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "symbolic answer checker cannot run" in message and "planted: this package is broken" in message
    assert not out.exists()


def test_generate_dtype_bfloat16_generates_with_bfloat16_weights(tmp_path, monkeypatch):
    import torch

    from reasoner.generation.hf import HFBackend

    seen = []
    init = HFBackend.__init__

    def spy(self, model, *args, **kwargs):
        seen.append(next(model.parameters()).dtype)
        init(self, model, *args, **kwargs)

    monkeypatch.setattr(HFBackend, "__init__", spy)
    run = tmp_path / "r"
    result = runner.invoke(app, ["iterate", "--run", str(run), *as_sets([*TINY_SAMPLES, "generate.dtype=bfloat16"])])
    assert result.exit_code == 0, result.output
    assert seen and set(seen) == {torch.bfloat16}  # the policy, each time a backend was built
    rollouts = [json.loads(x) for x in (run / "iter_0001" / "rollouts.jsonl").read_text().splitlines()]
    assert len(rollouts) == 8 * 4 and all(r["num_tokens"] > 0 and r["logprob"] < 0 for r in rollouts)


def test_judge_filter_drops_samples_with_a_bad_step(tmp_path):
    import reasoner.trainphases as tp
    from reasoner import config as cfg
    from reasoner.records import StepLabels, Trajectory
    from reasoner.run import RunDir
    from reasoner.session import Session

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


def _bad_judge(folder):
    """A judge that answers every step with "Verdict:BAD": a 0-layer-effect Llama whose LM head
    maps each character to the next one of that phrase (after the prompt's final space)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from reasoner import models

    tok = models.tiny_tokenizer()
    vocab = len(tok)
    hidden = vocab + vocab % 2  # RoPE wants an even head size
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=8,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    chain = " Verdict:BAD"
    ids = [tok.convert_tokens_to_ids(c) for c in chain] + [tok.eos_token_id]
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.model.norm.weight.fill_(1.0)
        model.model.embed_tokens.weight.copy_(torch.eye(vocab, hidden))
        model.lm_head.weight[tok.eos_token_id, :] = 50.0  # any other character: stop
        for cur, nxt in zip(ids, ids[1:], strict=False):
            model.lm_head.weight[:, cur] = 0.0
            model.lm_head.weight[nxt, cur] = 100.0
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.mark.slow  # a second process, or a whole iterate: end to end
def test_judge_filter_keeps_fewer_samples_through_iterate(tmp_path):
    judge = _bad_judge(tmp_path / "judge")
    common = [
        *TINY_SAMPLES,
        "run.iterations=1",
        "run.iterations=1",
        "verify.require_steps=false",
        "train.max_per_problem=8",
        "train.policy.max_steps=1",
        'label.labellers=["judge"]',
        f"label.judge_model={judge}",
        "label.judge_samples=1",
        "label.judge_max_new_tokens=16",
    ]
    kept = {}
    for name, extra in (("plain", []), ("filtered", ["train.filter_labeller=judge"])):
        args = [x for kv in common + extra for x in ("--set", kv)]
        result = runner.invoke(app, ["iterate", "--run", str(tmp_path / name), *args])
        assert result.exit_code == 0, result.output
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        kept[name] = manifest["iterations"]["1"]["train"]["metrics"]
    labels = (tmp_path / "filtered" / "iter_0001" / "labels.jsonl").read_text().splitlines()
    assert all(set(json.loads(line)["labels"]) <= {0.0} for line in labels)  # every step judged BAD
    assert kept["plain"]["examples"] > 0 and kept["filtered"]["examples"] == 0
    assert kept["filtered"]["filtered_out"] > 0 and "filtered_out" not in kept["plain"]
