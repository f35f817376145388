"""Runs a user can trust: one writer per run, honest phase status, integrity checks with redo,
one-line errors, and results on stdout. Issue: "Runs a user can trust and repair"."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reasoner import config as cfg
from reasoner import integrity, writer_lock
from reasoner.cli import app
from reasoner.run import RunDir

runner = CliRunner()

TINY = [
    "model.policy=tiny",
    "run.iterations=1",
    "run.baseline_eval=false",
    "task.train_size=2",
    "task.test_size=2",
    "generate.samples=2",
    "generate.max_new_tokens=4",
    "evaluate.k=0",
    "evaluate.max_new_tokens=4",
    "task.prompt=zeroshot",
]
SETS = [x for kv in TINY for x in ("--set", kv)]


def _files(run: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``run`` with its size and mtime: what a writer would change."""
    return {str(p.relative_to(run)): (p.stat().st_size, p.stat().st_mtime_ns) for p in run.rglob("*")}


def _hold_lock(run: Path) -> subprocess.Popen:
    """A second process that takes the run's writer lock and keeps it until killed."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from reasoner import writer_lock
        writer_lock.acquire({str(run / "lock")!r}, command="reasoner iterate --run other")
        print("held", flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


# ------------------------------------------------------------------------------ one writer
@pytest.mark.slow  # a second process, or a whole iterate: end to end
def test_second_writer_is_refused_naming_the_holder_and_deletes_nothing(tmp_path):
    run = tmp_path / "r"
    assert runner.invoke(app, ["generate", "--run", str(run), *SETS]).exit_code == 0
    temp = run / "iter_0001" / ".rollouts.jsonl.abc.tmp"  # as a live writer's half-written file
    temp.write_text("partial")
    holder = _hold_lock(run)
    try:
        before = _files(run)
        result = runner.invoke(app, ["verify", "--run", str(run)])
        assert result.exit_code == 2
        message = " ".join(result.output.split())
        assert message.startswith(f"error: {run} is being written by pid {holder.pid} on ")
        assert "since 20" in message and "(reasoner iterate --run other); wait for it or stop it" in message
        assert len(result.output.strip().splitlines()) == 1
        assert temp.read_text() == "partial" and _files(run) == before
        status = json.loads(runner.invoke(app, ["runs", "--root", str(tmp_path), "--json"]).stdout)
        assert status[0]["writer"]["pid"] == holder.pid
        assert status[0]["recipe"] == "rft" and status[0]["phases"] == [
            "generate",
            "verify",
            "label",
            "train",
            "evaluate",
        ]
    finally:
        holder.kill()
        holder.wait()
    # the holder died (SIGKILL): its lock went with it, and the next writer cleans its temporary
    assert runner.invoke(app, ["verify", "--run", str(run)]).exit_code == 0
    assert not temp.exists()


@pytest.mark.slow  # a second process, or a whole iterate: end to end
def test_a_refused_new_run_leaves_no_folder(tmp_path):
    run = tmp_path / "new"
    run.mkdir()
    holder = _hold_lock(run)  # a writer that is creating this very run
    try:
        result = runner.invoke(app, ["generate", "--run", str(run), *SETS])
        assert result.exit_code == 2 and "is being written by" in result.output
        assert not (run / "config.toml").exists()
    finally:
        holder.kill()
        holder.wait()


def test_lock_is_reentrant_in_one_process_and_released(tmp_path):
    path = tmp_path / "lock"
    writer_lock.acquire(path)
    writer_lock.acquire(path)
    writer_lock.release(path)
    assert writer_lock.held_here(path)
    writer_lock.release(path)
    assert not writer_lock.held_here(path)
    assert writer_lock.live_holder(path) is None and path.read_text() == ""


# -------------------------------------------------------------------------- honest status
def test_a_phase_that_raises_is_failed_with_its_reason_and_keeps_its_traceback(tmp_path, monkeypatch):
    import dataclasses

    from reasoner import recipes

    def broken(session, k):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setitem(recipes.PHASES, "verify", dataclasses.replace(recipes.PHASES["verify"], run=broken))
    run = tmp_path / "r"
    assert runner.invoke(app, ["generate", "--run", str(run), *SETS]).exit_code == 0
    result = runner.invoke(app, ["verify", "--run", str(run)])
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)  # a bug: not a one-liner
    entry = RunDir(run).phase(1, "verify")
    assert entry["status"] == "failed" and entry["error"] == "RuntimeError: disk on fire"
    table = runner.invoke(app, ["runs", "--root", str(tmp_path)]).stdout
    assert "FAILED" in table and "r iter 1 verify: RuntimeError: disk on fire" in table
    monkeypatch.undo()
    assert runner.invoke(app, ["verify", "--run", str(run)]).exit_code == 0  # a failed phase runs again
    assert RunDir(run).phase(1, "verify")["status"] == "complete" and "error" not in RunDir(run).phase(1, "verify")


def test_a_phase_left_running_by_a_dead_process_reads_interrupted(tmp_path):
    rd = RunDir(tmp_path / "r")
    rd.open(cfg.apply_overrides(cfg.Config(), TINY))
    rd.begin_phase(1, "generate")
    assert rd.status(1, "generate") == "running"  # this process holds the lock
    rd.close()
    assert rd.status(1, "generate") == "interrupted"
    assert rd.phase(1, "generate")["status"] == "running"  # the manifest is not rewritten by a reader


# ----------------------------------------------------------------------- integrity, redo
def test_integrity_fingerprints_files_and_folders(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"abc")
    fp = integrity.fingerprint(f)
    # sha256("abc"), as printed by `printf abc | sha256sum`
    assert fp == {"size": 3, "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "x").write_bytes(b"12")
    (d / "y").write_bytes(b"345")
    before = integrity.fingerprint(d)
    assert before["size"] == 5 and integrity.problem(d, before) is None
    (d / "y").write_bytes(b"346")
    assert integrity.problem(d, before) == "changed content (sha256 differs)"
    f.write_bytes(b"ab")
    assert integrity.problem(f, fp) == "changed size (3 -> 2 bytes)"
    f.unlink()
    assert integrity.problem(f, fp) == "is missing"


def _tiny_run(tmp_path: Path, name: str = "r") -> Path:
    run = tmp_path / name
    result = runner.invoke(app, ["iterate", "--run", str(run), *SETS])
    assert result.exit_code == 0, result.output
    return run


def _content(run: Path) -> dict[str, bytes]:
    skip = {"manifest.json", "metrics.jsonl", "lock"}
    return {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name not in skip}


def test_truncated_artefact_is_refused_by_its_reader_and_redone_on_resume(tmp_path):
    run = _tiny_run(tmp_path)
    reference = _content(run)
    rollouts = run / "iter_0001" / "rollouts.jsonl"
    rollouts.write_bytes(rollouts.read_bytes()[:50])
    result = runner.invoke(app, ["verify", "--run", str(run)])
    assert result.exit_code == 2
    assert (
        "iter_0001/rollouts.jsonl changed size" in result.output
        and "generate of iteration 1 must run again before verify" in " ".join(result.output.split())
    )
    assert RunDir(run).phase(1, "generate")["status"] == "pending"  # honest: it must run again
    result = runner.invoke(app, ["iterate", "--run", str(run)])
    assert result.exit_code == 0, result.output
    assert _content(run) == reference  # generation is seeded: the redo rebuilt the same files
    assert all(RunDir(run).is_complete(1, p) for p in ("generate", "verify", "label", "train", "evaluate"))


def test_deleted_policy_is_noticed_and_training_redone(tmp_path):
    import shutil

    run = _tiny_run(tmp_path)
    reference = _content(run)
    shutil.rmtree(run / "iter_0001" / "policy")
    result = runner.invoke(app, ["iterate", "--run", str(run)])
    assert result.exit_code == 0
    assert "iter 1 train: iter_0001/policy is missing since train completed" in " ".join(result.stderr.split())
    assert _content(run) == reference


def test_redo_runs_a_phase_again_and_marks_later_phases_pending(tmp_path):
    run = _tiny_run(tmp_path)
    rd = RunDir(run)
    eval_before = (run / "iter_0001" / "eval.json").stat().st_mtime_ns
    gen_finished = rd.phase(1, "generate")["finished"]
    result = runner.invoke(app, ["verify", "--run", str(run), "--redo"])
    assert result.exit_code == 0, result.output
    assert rd.is_complete(1, "verify") and rd.phase(1, "generate")["finished"] == gen_finished
    for later in ("label", "train", "evaluate"):
        assert rd.phase(1, later)["status"] == "pending"
        assert rd.phase(1, later)["redo"]["reason"] == "redo asked with --redo"
    assert (run / "iter_0001" / "policy").exists()  # old artefacts stay until replaced
    assert runner.invoke(app, ["iterate", "--run", str(run)]).exit_code == 0
    assert all(rd.is_complete(1, p) for p in ("label", "train", "evaluate"))
    assert (run / "iter_0001" / "eval.json").stat().st_mtime_ns != eval_before
    # iterate --redo PHASE --iteration K
    result = runner.invoke(app, ["iterate", "--run", str(run), "--redo", "evaluate", "--iteration", "1"])
    assert result.exit_code == 0 and "iter 1 evaluate:" in result.stderr
    bad = runner.invoke(app, ["iterate", "--run", str(run), "--redo", "evaluate", "--iteration", "7"])
    assert bad.exit_code == 2 and "cannot redo evaluate of iteration 7: this run has no such phase" in bad.output


def test_complete_phase_says_it_is_complete(tmp_path):
    run = _tiny_run(tmp_path)
    result = runner.invoke(app, ["verify", "--run", str(run)])
    assert result.exit_code == 0
    assert "iter 1 verify is already complete (its saved metrics follow); --redo runs it again" in result.stderr


# ------------------------------------------------------------------------------- read-only
def test_read_only_commands_write_nothing_in_the_run(tmp_path):
    run = _tiny_run(tmp_path)
    (run / ".stale.abc.tmp").write_text("x")  # even a dead writer's temporary stays
    before = _files(run)
    assert runner.invoke(app, ["runs", "--root", str(tmp_path)]).exit_code == 0
    assert runner.invoke(app, ["report", "--run", str(run)]).exit_code == 0
    out = tmp_path / "steps"
    result = runner.invoke(
        app,
        ["evaluate", "--steps", "--run", str(run), "--problems", "2", "--samples", "1", "--out", str(out)]
        + ["--set", 'label.labellers=["gold"]'],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "steps.json").read_text())
    rows = (out / "steps.jsonl").read_text().splitlines()
    assert summary["solutions"] == len(rows) == 2 and "gold" in summary["labellers"]
    assert all(len(json.loads(r)["scores"]["gold"]) == len(json.loads(r)["steps"]) for r in rows)
    assert _files(run) == before


# --------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "trian.lora_rank=4"],
            "error: unknown config section [trian]; valid: run, model, task, generate, search, verify, label, "
            "train, evaluate, balance, tools",
        ),
        (
            ["--set", "model.policy=smollm2-135"],
            "error: model 'smollm2-135': not an embedded model (smollm2-135m), not tiny[:SEED], not an existing "
            "folder, and not in the local hub cache (HF_HUB_OFFLINE is set); did you mean smollm2-135m?",
        ),
    ],
)
def test_errors_are_one_line_verbatim_and_leave_no_run(tmp_path, args, message):
    run = tmp_path / "r"
    started = time.monotonic()
    result = runner.invoke(app, ["iterate", "--run", str(run), *args])
    assert result.exit_code == 2
    assert " ".join(result.output.split()) == message
    assert time.monotonic() - started < 5 and not run.exists()


def test_section_name_in_a_toml_file_survives(tmp_path):
    bad = tmp_path / "c[1].toml"
    bad.write_text("[trian]\nlora_rank = 4\n")
    result = runner.invoke(app, ["iterate", "--run", str(tmp_path / "r"), "--config", str(bad)])
    assert (
        " ".join(result.output.split()) == f"error: {bad}: unknown config section [trian]; valid: run, model, "
        "task, generate, search, verify, label, train, evaluate, balance, tools"
    )


def test_a_device_torch_cannot_use_is_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this torch can use CUDA")
    result = runner.invoke(app, ["iterate", "--run", str(tmp_path / "r"), "--set", "run.device=cuda", *SETS])
    assert result.exit_code == 2
    assert " ".join(result.output.split()) == (
        f"error: run.device = 'cuda' but this torch ({torch.__version__}) cannot use CUDA (no CUDA build or no "
        'GPU); set run.device = "cpu" or install the CUDA build of the same torch version'
    )


def test_hub_lookup_fails_fast_when_online(tmp_path, monkeypatch):
    """Online but the hub unreachable (this machine): one request, no minute of retries."""
    from reasoner import models

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    started = time.monotonic()
    with pytest.raises(models.ModelSpecError, match=r"and the hub lookup failed \(\w+\)$"):
        models.check("someone/no-such-model")
    assert time.monotonic() - started < models.HUB_TIMEOUT + 2


# ------------------------------------------------------------------------- stdout, stderr
def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "reasoner.cli", *args], capture_output=True, text=True, env=env)


@pytest.mark.slow
def test_results_go_to_stdout_and_progress_to_stderr(tmp_path):
    run = tmp_path / "r"
    done = _cli("iterate", "--run", str(run), *SETS, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["1"]["pass@1"] >= 0.0  # stdout is the result alone
    assert "iter 1 generate:" in done.stderr and "iter 1 generate" not in done.stdout
    report = _cli("report", "--run", str(run))
    assert "pass@1" in report.stdout and "wrote" not in report.stdout
    assert report.stderr.startswith("wrote ") and "report.md" in report.stderr.replace("\n", "")  # the log alone
    version = _cli("--version")
    assert version.stdout.startswith("reasoner 0.") and version.returncode == 0
    short = _cli("runs", "-h")
    assert short.returncode == 0 and "--json" in short.stdout
    phase_help = _cli("evaluate", "--help").stdout
    flags = [line.split()[0] for line in phase_help.splitlines() if line.strip().startswith("--")]
    assert {"--redo", "--steps", "--json"} <= set(flags)
    for flag in ("--redo", "--steps", "--json"):  # a flag, not "--steps <bool>"
        line = next(x for x in phase_help.splitlines() if x.strip().startswith(flag))
        assert "<bool>" not in line and "--no-" not in line


def test_runs_lists_a_run_whose_recipe_this_version_does_not_know(tmp_path):
    rd = RunDir(tmp_path / "r")
    rd.open(cfg.apply_overrides(cfg.Config(), TINY))
    rd.close()
    rd.config_path.write_text(rd.config_path.read_text().replace('recipe = "rft"', 'recipe = "future"'))
    result = runner.invoke(app, ["runs", "--root", str(tmp_path), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["recipe"] == "future?"
