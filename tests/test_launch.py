"""Training phases on several processes: `iterate` starting torchrun (`train.launcher`), rank 0
writing the run directory under the loop's lock, the other ranks only reading it, a rank that
dies taking the job down and the resume continuing from the last saved step."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tinyrun import TINY_SAMPLES, as_sets
from typer.testing import CliRunner

from reasoner import launch, loop, models
from reasoner.cli import app
from reasoner.config import Config, ConfigError, TrainConfig
from reasoner.ranks import LaunchError, Ranks, current, free_port, shared_dir
from reasoner.run import RunDir, RunError

runner = CliRunner()


# ------------------------------------------------------------------------------ units
def test_the_launcher_commands_name_the_phase_the_run_and_the_lock_holder(tmp_path):
    tc = TrainConfig(launcher="torchrun", processes=4, launcher_args=["--nnodes", "2"])
    argv = launch.command(tc, "train", tmp_path / "r", 3)
    assert argv[:6] == [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "4", "--nnodes"]
    assert argv[6:9] == ["2", "-m", "reasoner.cli"]
    assert argv[9:14] == ["train", "--run-dir", str(tmp_path / "r"), "--iteration", "3"]
    assert argv[14:] == ["--launched-by", launch.holder_token()]
    assert launch.holder_token() == f"{os.getpid()}@{os.uname().nodename}"
    if (Path(sys.executable).with_name("deepspeed")).exists():
        hosts = tmp_path / "hostfile"
        hosts.write_text("node1 slots=8\nnode2 slots=8\n")
        argv = launch.command(TrainConfig(launcher="deepspeed", hostfile=str(hosts)), "prime", tmp_path / "r", 1)
        assert argv[1:6] == ["--hostfile", str(hosts), "--no_local_rank", "--module", "reasoner.cli"]
        assert argv[6] == "prime"
        argv = launch.command(TrainConfig(launcher="deepspeed", processes=2), "train", tmp_path / "r", 1)
        assert argv[1:3] == ["--num_gpus", "2"] and argv[3] == "--master_port" and argv[5] == "--no_local_rank"


def test_a_job_of_this_host_alone_gets_a_free_port_and_launcher_args_override_it(tmp_path):
    argv = launch.command(TrainConfig(launcher="torchrun", processes=2), "train", tmp_path / "r", 1)
    assert argv[3:5] == ["--nproc_per_node", "2"] and argv[5] == "--master_port" and argv[7] == "-m"
    port = int(argv[6])
    assert port != 29500 and 1024 < port < 65536  # not the default a second job would also take
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # nothing listens there
    for args in (["--master_port", "29600"], ["--rdzv-endpoint=host:29400"], ["--standalone"]):
        argv = launch.command(TrainConfig(launcher="torchrun", launcher_args=args), "train", tmp_path / "r", 1)
        assert argv.count("--master_port") == args.count("--master_port"), argv  # the user's own placement


def test_a_bad_launcher_setting_is_refused_before_the_run_is_made(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        launch.check(TrainConfig(launcher="deepspeed", hostfile=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="read by the deepspeed launcher"):
        launch.check(TrainConfig(launcher="torchrun", hostfile=str(tmp_path)))
    with pytest.raises(ConfigError, match="processes must be >= 1"):
        TrainConfig(processes=0)
    keys = as_sets([*TINY_SAMPLES, "train.launcher=mpirun"])
    got = runner.invoke(app, ["iterate", "--run", str(tmp_path / "r"), *keys])
    assert got.exit_code == 2 and "mpirun" in got.output and "torchrun" in got.output
    assert not (tmp_path / "r").exists()


def test_the_rank_comes_from_the_launchers_variables(monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert current() == Ranks(2, 4, 0) and not current().main and current().launched
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(LaunchError, match="RANK=4 does not lie in WORLD_SIZE=4"):
        current()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(LaunchError, match="RANK='x' is not an integer"):
        current()


def test_a_follower_rank_reads_the_run_and_writes_nothing(tmp_path):
    config = Config()
    writer = RunDir(tmp_path / "r")
    writer.open(config)
    writer.begin_phase(1, "train")
    writer.close()
    before = {p: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()}
    follower = RunDir(tmp_path / "r", Ranks(1, 2, 1))
    assert follower.open(config) == config  # no lock taken
    assert follower.writer() is None
    follower.begin_phase(1, "train")
    follower.log({"iteration": 1, "phase": "train", "step": 1, "loss": 1.0})
    follower.complete_phase(1, "train", [], {"steps": 1})
    assert follower.phase(1, "train")["status"] == "running"  # what rank 0 wrote, unchanged
    with pytest.raises(RunError, match="rank 1 may not write rollouts.jsonl"):
        follower.write_records(1, "rollouts.jsonl", [])
    assert {p: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()} == before
    with pytest.raises(RunError, match="not a run"):
        RunDir(tmp_path / "other", Ranks(1, 2, 1)).open(config)


def test_a_launched_rank_0_writes_only_for_the_process_holding_the_lock(tmp_path):
    config = Config()
    holder = RunDir(tmp_path / "r")
    holder.open(config)  # this process holds the lock, as iterate does while it waits
    rank0 = RunDir(tmp_path / "r", Ranks(0, 2, 0))
    rank0.open(config, launched_by=launch.holder_token())
    rank0.log({"event": "x"})
    assert rank0.metrics()[-1]["event"] == "x"
    with pytest.raises(RunError, match="not held by it"):
        RunDir(tmp_path / "r", Ranks(0, 2, 0)).open(config, launched_by="1@elsewhere")
    holder.close()
    with pytest.raises(RunError, match="not held by it"):  # nobody holds it now
        RunDir(tmp_path / "r", Ranks(0, 2, 0)).open(config, launched_by=launch.holder_token())


def test_a_shared_folder_replaces_its_target_only_when_filled(tmp_path):
    target = tmp_path / "policy"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(ZeroDivisionError), shared_dir(target, Ranks()) as tmp:
        (tmp / "half.txt").write_text("half")
        raise ZeroDivisionError
    assert [p.name for p in target.iterdir()] == ["old.txt"]  # a failed write leaves the old one
    with shared_dir(target, Ranks()) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy"]  # no temporaries left


# a hook registered before the group exists runs after the ones registered by its init (atexit
# runs them last in, first out), so it sees whether the group was destroyed before teardown
_EXIT_PROBE = """
import atexit, os, sys
import torch.distributed as dist
atexit.register(lambda: print("GROUP_AT_EXIT", dist.is_initialized(), flush=True))
os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[2])
if sys.argv[1] == "ranks":
    from reasoner.ranks import init_group
    init_group("cpu")
else:
    from reasoner.training.zero import init_distributed
    init_distributed("cpu")
assert dist.is_initialized() and dist.get_world_size() == 1
"""


@pytest.mark.parametrize("init", ["ranks", "deepspeed"])
def test_a_process_group_is_destroyed_before_the_interpreter_exits(init):
    if init == "deepspeed":
        pytest.importorskip("deepspeed")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_PROBE, init, str(free_port())],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "GROUP_AT_EXIT False" in done.stdout, done.stdout


def test_iterate_under_a_launcher_and_non_training_phases_there_are_refused(tmp_path, monkeypatch):
    run = tmp_path / "r"
    assert runner.invoke(app, ["generate", "--run", str(run), *as_sets(TINY_SAMPLES)]).exit_code == 0
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    got = runner.invoke(app, ["iterate", "--run", str(run)])
    assert got.exit_code == 2 and "runs in one process" in got.output
    got = runner.invoke(app, ["verify", "--run", str(run), "--iteration", "1"])
    assert got.exit_code == 2 and "only training phases run under a launcher" in got.output
    assert loop.plan  # the loop module stays importable beside the launcher's


# ------------------------------------------------------------------- several processes
LAUNCHED = [
    *TINY_SAMPLES,
    "run.iterations=1",
    "verify.require_steps=false",
    "train.policy.epochs=3",
    "train.policy.micro_batch_size=1",
    "train.policy.batch_size=2",
    "train.policy.save_every=1",
]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}


def _iterate(run: Path, keys: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "reasoner.cli", "iterate", "--run", str(run), *as_sets(keys)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def _train_losses(run: Path) -> list[float]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [e["loss"] for e in lines if e.get("phase") == "train" and "step" in e]


def _ranks_of(run: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--launched-by" in cmd and str(run).encode() in cmd and b"torch.distributed.run" not in b" ".join(cmd):
            found.append(int(proc.name))
    return found


@pytest.mark.slow
def test_iterate_launches_torchrun_and_a_dead_rank_resumes_from_the_last_saved_step(tmp_path):
    """torchrun, a SIGKILL of one rank, then the resume under the deepspeed launcher."""
    one = tmp_path / "one"  # the same global batch in one process: the torch engine, no launcher
    done = _iterate(one, LAUNCHED)
    _, err = done.communicate(timeout=600)
    assert done.returncode == 0, err[-3000:]
    expected = _train_losses(one)
    assert len(expected) >= 3, expected

    two = tmp_path / "two"
    keys = [*LAUNCHED, "train.launcher=torchrun", "train.processes=2"]
    keys += ["train.policy.engine=deepspeed", "train.policy.zero_stage=2"]
    job = _iterate(two, keys)
    latest = two / "iter_0001" / "train_state" / "latest"
    deadline = time.time() + 600
    while not latest.exists() and job.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    ranks = _ranks_of(two)
    if job.poll() is not None:  # the job ended before it saved a step: show why
        raise AssertionError(f"launched job exited {job.returncode}: {job.communicate()[1][-3000:]}")
    assert len(ranks) == 2, ranks  # two ranks of the phase command, launched by iterate
    os.kill(max(ranks), signal.SIGKILL)
    _, err = job.communicate(timeout=600)
    assert job.returncode == 2, err[-3000:]
    assert "train of iteration 1 under torchrun exited with status" in err
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["iterations"]["1"]["train"]["status"] != "complete"
    saved = int((latest.read_text().strip()).split("-")[1])
    assert saved >= 1

    # the resume goes through the other launcher: the deepspeed launcher's 2 processes pick up
    # the torchrun job's saved step
    job = _iterate(two, [k.replace("launcher=torchrun", "launcher=deepspeed") for k in keys])
    _, err = job.communicate(timeout=600)
    assert job.returncode == 0, err[-3000:]
    assert f"resuming from step {saved}" in err
    assert "deepspeed" in err and "exits successfully" in err  # the deepspeed launcher's own lines
    got = _train_losses(two)
    start = models.load("tiny").model.state_dict()
    assert len(got) == len(expected) and all(abs(a - b) < 1e-5 for a, b in zip(got, expected, strict=True)), (
        got,
        expected,
    )
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["iterations"]["1"]["train"]["status"] == "complete"
    assert manifest["iterations"]["1"]["evaluate"]["status"] == "complete"
    a = load_file(str(one / "iter_0001" / "policy" / "model.safetensors"))
    b = load_file(str(two / "iter_0001" / "policy" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)  # the same model
    assert any(not torch.equal(a[k], start[k]) for k in a if k in start)  # and a trained one
    assert not (two / "iter_0001" / "train_state").exists()
    assert not list((two / "iter_0001").glob(".*"))  # no shared temporaries left behind


# ------------------------------------------------------------------------ configs/gpu
ROOT = Path(__file__).resolve().parents[1]
GPU_CONFIGS = sorted((ROOT / "configs" / "gpu").glob("*.toml"))


@pytest.mark.parametrize("path", GPU_CONFIGS, ids=[c.stem for c in GPU_CONFIGS])
def test_each_gpu_config_loads_and_its_batches_split_over_its_ranks(path, monkeypatch):
    from reasoner import configfile
    from reasoner.training.zero import ds_config

    monkeypatch.chdir(ROOT)  # the configs name their files relative to the checkout
    conf = configfile.load(path)
    launch.check(conf.train)
    assert conf.run.device == "cuda" and conf.generate.backend == "vllm"
    world = conf.train.processes
    if conf.train.hostfile:
        lines = Path(conf.train.hostfile).read_text().split("\n")
        world = sum(int(x.split("slots=")[1]) for x in lines if "slots=" in x)
    got = ds_config(conf.train.policy, world)  # refuses a batch that does not split
    assert got["bf16"] == {"enabled": True}
    assert got["train_batch_size"] == conf.train.policy.batch_size
    assert got["gradient_accumulation_steps"] * got["train_micro_batch_size_per_gpu"] * world == got["train_batch_size"]
