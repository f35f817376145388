"""Every ready config in configs/ runs end to end through `reasoner iterate --config` at smoke
size (a tiny model, a few problems, 2 iterations) and resumes: a second `iterate` on the
finished run does nothing. configs/gpu/ (when present) needs a GPU and is only loaded."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reasoner.cli import app

pytestmark = pytest.mark.slow

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))
SMALL = [
    "model.policy=tiny",
    "run.iterations=2",
    "run.baseline_eval=false",
    "task.train_size=4",
    "task.test_size=2",
    "task.prompt=zeroshot",
    "generate.samples=2",
    "generate.max_new_tokens=12",
    "generate.batch_size=8",
    "generate.chunk_size=4",
    "search.mcts_simulations=2",
    "search.mcts_expansions=2",
    "search.step_tokens=6",
    "label.max_trajectories=4",
    "label.mc_samples=2",
    "label.mc_max_new_tokens=4",
    "label.judge_samples=2",
    "label.judge_max_new_tokens=4",
    "balance.probe_size=2",
    "balance.samples=2",
    "balance.temperatures=[0.5, 1.0]",
    "train.policy.micro_batch_size=1",
    "train.policy.batch_size=2",
    "train.policy.max_steps=2",
    "train.reward.micro_batch_size=1",
    "train.reward.batch_size=2",
    "train.reward.max_steps=2",
    "train.judge.micro_batch_size=1",
    "train.judge.batch_size=2",
    "train.judge.max_steps=2",
    "evaluate.k=0",
    "evaluate.max_new_tokens=4",
]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_ready_config_runs_at_smoke_size_and_resumes(tmp_path, config, monkeypatch):
    monkeypatch.setenv("REASONER_PROGRESS", "0")
    run = tmp_path / "r"
    args = ["iterate", "--run", str(run), "--config", str(config), *[x for s in SMALL for x in ("--set", s)]]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((run / "manifest.json").read_text())
    assert all(e["status"] == "complete" for it in manifest["iterations"].values() for e in it.values())
    assert (run / "iter_0002" / "eval.json").exists()
    mtime = (run / "manifest.json").stat().st_mtime_ns
    again = CliRunner().invoke(app, ["iterate", "--run", str(run)])
    assert again.exit_code == 0 and (run / "manifest.json").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_no_shipped_config_trains_on_gold_step_labels(config):
    """Gold step labels are an evaluation tool: the new user's main run (default.toml) and every
    other shipped recipe train without them; only a config that names the oracle reads them
    (bench/methods.py's rft-oracle sets verify.require_steps=true on the command line)."""
    from reasoner import configfile

    assert configfile.load(config, warn=False).verify.require_steps is False


def test_every_bench_methods_row_loads_and_only_the_oracle_row_reads_gold_steps():
    """bench/methods.py's rows are configs/ files plus --set overrides: each loads (a misspelt key
    or a bad value fails here, not hours into a benchmark), and only rft-oracle names the oracle."""
    import importlib.util

    from reasoner import configfile

    path = Path(__file__).resolve().parents[1] / "bench" / "methods.py"
    spec = importlib.util.spec_from_file_location("bench_methods", path)
    methods = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(methods)
    rows = {**methods.METHODS, **methods.REAL}
    assert {"rft-oracle", "dpo", "dpo-nll", "dpo-same", "mutual", "rft-code-gsm8k"} <= set(rows)
    for name, (config, overrides) in rows.items():
        loaded = configfile.load(path.parents[1] / "configs" / config, overrides, warn=False)
        assert loaded.verify.require_steps is (name == "rft-oracle"), name
    same = configfile.load(path.parents[1] / "configs" / rows["dpo-same"][0], rows["dpo-same"][1], warn=False)
    assert same.search.pair_kinds == "same" and same.train.policy.objective == "dpo"
