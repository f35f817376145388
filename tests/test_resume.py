"""SIGKILL a real `reasoner iterate` subprocess at several moments, resume it, and compare every
artefact with an uninterrupted run (timestamps and durations aside)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CONFIG = """
[run]
iterations = 2
seed = 7
threads = 1
[model]
policy = "tiny"
[task]
pack = "arith"
train_size = 24
test_size = 8
prompt = "zeroshot"
[generate]
samples = 8
max_new_tokens = 40
temperature = 1.0
batch_size = 16
chunk_size = 4
[verify]
require_steps = false
[train]
lora_rank = 0
learning_rate = 1e-3
batch_size = 1
micro_batch_size = 1
epochs = 3
max_per_problem = 8
save_every = 1
[evaluate]
k = 2
max_new_tokens = 24
"""


PRM_CONFIG = CONFIG.replace("[generate]", '[generate]\nsearcher = "mcts"').replace(
    "[train]",
    '[search]\nmcts_simulations = 3\nmcts_expansions = 2\nstep_tokens = 8\nmcts_value = "implicit"\n'
    '[label]\nlabellers = ["mc", "implicit", "judge"]\nmc_samples = 2\njudge_samples = 2\n'
    "judge_max_new_tokens = 6\nmax_trajectories = 12\nmc_max_new_tokens = 8\nreward_lora_rank = 0\n[train]",
)


def _start(run: Path, config: Path | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "reasoner.cli", "iterate", "--run", str(run)]
    if config is not None:
        cmd += ["--config", str(config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return err


def _kill_when(proc: subprocess.Popen, condition, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"run ended before the kill point: {proc.stderr.read()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail("kill point never reached")
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _manifest_status(run: Path, iteration: int, phase: str) -> str | None:
    try:
        m = json.loads((run / "manifest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return m["iterations"].get(str(iteration), {}).get(phase, {}).get("status")


def _snapshot(run: Path) -> dict[str, object]:
    """Every file's bytes; manifest and metrics without times and durations."""
    out: dict[str, object] = {}
    for path in sorted(run.rglob("*")):
        if not path.is_file():
            continue
        rel = str(path.relative_to(run))
        if rel == "manifest.json":
            m = json.loads(path.read_text())
            m.pop("created", None)
            for phases in m["iterations"].values():
                for entry in phases.values():
                    entry.pop("started", None)
                    entry.pop("finished", None)
                    entry.get("metrics", {}).pop("seconds", None)
            out[rel] = m
        elif rel == "metrics.jsonl":
            events = [json.loads(line) for line in path.read_text().splitlines()]
            for e in events:
                e.pop("time", None)
                e.pop("seconds", None)
            out[rel] = events
        else:
            out[rel] = path.read_bytes()
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    config = root / "c.toml"
    config.write_text(CONFIG)
    _finish(_start(root / "run", config))
    snap = _snapshot(root / "run")
    manifest = snap["manifest.json"]
    # Preconditions that make the kill tests meaningful.
    assert manifest["iterations"]["1"]["train"]["metrics"]["steps"] >= 4, "too few training steps to kill mid-way"
    assert manifest["iterations"]["1"]["generate"]["metrics"]["trajectories"] == 24 * 8
    return config, snap


def _assert_same(run: Path, snap: dict) -> None:
    got = _snapshot(run)
    assert sorted(got) == sorted(snap)
    for name in snap:
        assert got[name] == snap[name], f"{name} differs after resume"


def test_kill_during_generation(tmp_path, reference):
    config, snap = reference
    run = tmp_path / "run"
    proc = _start(run, config)
    parts = run / "iter_0001" / "rollouts.parts"
    _kill_when(proc, lambda: (parts / "part-00001.jsonl").exists())
    assert not (run / "iter_0001" / "rollouts.jsonl").exists()  # killed inside the phase
    _finish(_start(run, None))
    _assert_same(run, snap)


def test_kill_between_phases(tmp_path, reference):
    config, snap = reference
    run = tmp_path / "run"
    proc = _start(run, config)
    _kill_when(proc, lambda: _manifest_status(run, 1, "verify") == "complete")
    assert _manifest_status(run, 1, "train") != "complete"
    _finish(_start(run, None))
    _assert_same(run, snap)


def test_second_writer_is_refused_and_the_first_run_is_unharmed(tmp_path, reference):
    """Two real processes on one run: the second is refused with one line naming the first,
    and the first ends with the artefacts of a run nobody disturbed."""
    from typer.testing import CliRunner

    from reasoner.cli import app

    config, snap = reference
    run = tmp_path / "run"
    proc = _start(run, config)
    deadline = time.time() + 120
    while _manifest_status(run, 1, "generate") != "running":
        assert proc.poll() is None and time.time() < deadline, "the first run never started generating"
        time.sleep(0.01)
    second = CliRunner().invoke(app, ["iterate", "--run", str(run)])
    assert second.exit_code == 2
    assert f"is being written by pid {proc.pid} on " in " ".join(second.output.split())
    _finish(proc)
    _assert_same(run, snap)


def test_sigkilled_writer_shows_interrupted_and_does_not_block_the_resume(tmp_path, reference):
    from reasoner.run import RunDir

    config, snap = reference
    run = tmp_path / "run"
    proc = _start(run, config)
    _kill_when(proc, lambda: _manifest_status(run, 1, "train") == "running")
    rd = RunDir(run)
    assert rd.writer() is None and rd.status(1, "train") == "interrupted"
    _finish(_start(run, None))
    _assert_same(run, snap)


def test_kill_during_training_resumes_from_saved_step(tmp_path, reference):
    config, snap = reference
    run = tmp_path / "run"
    proc = _start(run, config)
    latest = run / "iter_0001" / "train_state" / "latest"
    _kill_when(proc, lambda: latest.exists() and latest.read_text().strip() >= "step-000002")
    assert not (run / "iter_0001" / "policy").exists()
    err = _finish(_start(run, None))
    assert "iter 1 train: resuming from step" in err
    _assert_same(run, snap)


def test_finished_run_does_nothing(tmp_path, reference):
    config, snap = reference
    run = tmp_path / "run"
    _finish(_start(run, config))
    # every file but the writer's lock, which each writer takes and signs with its pid
    mtimes = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != "lock"}
    err = _finish(_start(run, None))
    assert "iter 1 generate" not in err
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != "lock"} == mtimes


@pytest.fixture(scope="module")
def prm_reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("prm")
    config = root / "c.toml"
    config.write_text(PRM_CONFIG)
    _finish(_start(root / "run", config))
    snap = _snapshot(root / "run")
    manifest = snap["manifest.json"]
    assert manifest["iterations"]["1"]["reward"]["metrics"]["steps"] >= 4
    assert "iter_0001/trees.jsonl" in snap and "iter_0001/labels.jsonl" in snap
    return config, snap


def test_tree_search_run_killed_in_reward_training_resumes_identically(tmp_path, prm_reference):
    config, snap = prm_reference
    run = tmp_path / "run"
    proc = _start(run, config)
    latest = run / "iter_0001" / "train_state_reward" / "latest"
    _kill_when(proc, lambda: latest.exists() and latest.read_text().strip() >= "step-000002")
    err = _finish(_start(run, None))
    assert "iter 1 reward: resuming from step" in err
    _assert_same(run, snap)


def test_tree_search_run_killed_during_labelling_resumes_identically(tmp_path, prm_reference):
    config, snap = prm_reference
    run = tmp_path / "run"
    proc = _start(run, config)
    _kill_when(proc, lambda: _manifest_status(run, 1, "label") == "running")
    _finish(_start(run, None))
    _assert_same(run, snap)


PRIME_CONFIG = """
[run]
recipe = "prime"
iterations = 1
seed = 3
threads = 1
baseline_eval = false
[model]
policy = "tiny"
[task]
pack = "arith"
train_size = 8
test_size = 2
prompt = "zeroshot"
[generate]
samples = 4
max_new_tokens = 24
temperature = 1.0
batch_size = 8
chunk_size = 4
[train]
prime_band = [0.0, 1.0]
[train.policy]
lora_rank = 0
micro_batch_size = 1
batch_size = 1
save_every = 1
[train.reward]
lora_rank = 0
[evaluate]
k = 0
max_new_tokens = 4
"""


def test_prime_run_killed_mid_training_resumes_identically(tmp_path):
    """A SIGKILL between PRIME steps (the PRM and the policy both moved since the last save)
    resumes from the saved state of both models to the artefacts of an uninterrupted run."""
    config = tmp_path / "c.toml"
    config.write_text(PRIME_CONFIG)
    _finish(_start(tmp_path / "reference", config))
    snap = _snapshot(tmp_path / "reference")
    assert snap["manifest.json"]["iterations"]["1"]["prime"]["metrics"]["steps"] >= 4
    run = tmp_path / "run"
    proc = _start(run, config)
    latest = run / "iter_0001" / "train_state_prime" / "latest"
    _kill_when(proc, lambda: latest.exists() and latest.read_text().strip() >= "step-000002")
    err = _finish(_start(run, None))
    assert "iter 1 prime: resuming from step" in err
    # both passes the killed run made are read back, not run again
    assert "iter 1 prime reference: read back" in err and "iter 1 prime old policy: read back" in err
    _assert_same(run, snap)


MUTUAL_CONFIG = """
[run]
recipe = "mutual"
iterations = 2
seed = 3
threads = 1
baseline_eval = false
[model]
policy = "tiny"
[task]
pack = "arith"
train_size = 8
test_size = 2
prompt = "zeroshot"
[generate]
samples = 4
max_new_tokens = 24
temperature = 1.0
batch_size = 8
chunk_size = 4
[label]
labellers = ["implicit"]
[train]
after_samples = 2
[train.policy]
objective = "mutual"
lora_rank = 0
micro_batch_size = 1
batch_size = 1
save_every = 1
[train.reward]
lora_rank = 0
micro_batch_size = 1
batch_size = 2
save_every = 1
[evaluate]
k = 0
max_new_tokens = 4
"""


@pytest.mark.parametrize("where", ["estep", "mstep"])
def test_mutual_taught_killed_in_either_step_resumes_identically(tmp_path, where):
    """Mutual-Taught: a SIGKILL in iteration 2's E-step (policy training) or M-step (the PRM's
    update on before/after pairs, after its samples were saved) resumes to the artefacts of an
    uninterrupted run."""
    config = tmp_path / "c.toml"
    config.write_text(MUTUAL_CONFIG)
    _finish(_start(tmp_path / "reference", config))
    snap = _snapshot(tmp_path / "reference")
    assert snap["manifest.json"]["iterations"]["2"]["mstep"]["metrics"]["pairs"] >= 1
    run = tmp_path / "run"
    proc = _start(run, config)
    phase, state = ("train", "train_state") if where == "estep" else ("mstep", "train_state_mstep")
    latest = run / "iter_0002" / state / "latest"
    _kill_when(proc, lambda: latest.exists() and latest.read_text().strip() >= "step-000001")
    err = _finish(_start(run, None))
    assert f"iter 2 {phase}: resuming from step" in err
    assert f"iter 2 {phase} reference: read back" in err  # the killed run's reference pass
    _assert_same(run, snap)


def test_sigkill_mid_evaluation_resumes_to_the_same_figures(tmp_path):
    """`reasoner evaluate --model`: killed after its first saved chunk, the same command resumes
    at the next chunk and ends with the figures and samples of an uninterrupted evaluation."""
    data = tmp_path / "mine.jsonl"
    data.write_text(
        "".join(json.dumps({"question": f"What is {i} plus {i}?", "answer": 2 * i}) + "\n" for i in range(12))
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}

    def cmd(out: Path) -> list[str]:
        args = ["--model", "tiny", "--pack", "arith", "--data", str(data), "--k", "3", "--max-new-tokens", "24"]
        return [sys.executable, "-m", "reasoner.cli", "evaluate", *args, "--chunk", "2", "--out", str(out)]

    whole = tmp_path / "whole"
    subprocess.run(cmd(whole), check=True, env=env, capture_output=True)
    cut = tmp_path / "cut"
    proc = subprocess.Popen(cmd(cut), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    _kill_when(proc, lambda: (cut / "parts" / "part-00000.jsonl").exists())
    assert not (cut / "eval.json").exists() and len(list((cut / "parts").glob("part-*.jsonl"))) < 6
    again = subprocess.run(cmd(cut), env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming" in again.stderr
    assert json.loads((cut / "eval.json").read_text()) == json.loads((whole / "eval.json").read_text())
    assert (cut / "samples.jsonl").read_text() == (whole / "samples.jsonl").read_text()
