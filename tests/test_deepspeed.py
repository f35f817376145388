"""Training engine `deepspeed` (ZeRO 0-3) on CPU with gloo: the same losses as the torch engine
and across process counts, exact checkpoint round trips, a SIGKILL of every rank resumed, an
export transformers loads. Each job runs in its own process (DeepSpeed initialises a process
group), under torchrun for two ranks."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tinyrun import TINY_SAMPLES
from typer.testing import CliRunner

from reasoner.cli import app
from reasoner.config import ConfigError, RoleTrainConfig
from reasoner.training.zero import ds_config

WORKER = str(Path(__file__).with_name("ds_worker.py"))
runner = CliRunner()
deepspeed = pytest.importorskip("deepspeed")


def _port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def job(*args: str, ranks: int = 1, tmp: Path, expect_kill: bool = False) -> list[float] | dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    if ranks == 1:
        cmd = [sys.executable, WORKER, *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}", f"--master_port={_port()}"]
        cmd += [WORKER, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, env=env, timeout=600)
    if expect_kill:
        assert done.returncode != 0 and "LOSSES" not in done.stdout
        return []
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith(("LOSSES ", "MATRIX ")))
    return json.loads(line.split(" ", 1)[1])


def close(a: list[float], b: list[float], tol: float = 1e-6) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


# ----------------------------------------------------------------------------- config
def test_the_deepspeed_config_comes_from_the_roles_section(tmp_path):
    cfg = RoleTrainConfig(batch_size=16, micro_batch_size=2, zero_stage=3, offload=True, max_grad_norm=0.5)
    got = ds_config(cfg, world=2)
    assert got["train_batch_size"] == 16 and got["train_micro_batch_size_per_gpu"] == 2
    assert got["gradient_accumulation_steps"] == 4 and got["gradient_clipping"] == 0.5  # 16 / (2 x 2 ranks)
    assert got["zero_optimization"] == {
        "stage": 3,
        "offload_optimizer": {"device": "cpu"},
        "offload_param": {"device": "cpu"},
    }
    assert got["optimizer"]["type"] == "AdamW"  # ZeRO-Offload steps with DeepSpeed's CPU Adam
    file = tmp_path / "ds.json"
    file.write_text(
        json.dumps(
            {
                "train_batch_size": "auto",
                "bf16": {"enabled": False},
                "zero_optimization": {"stage": "auto", "overlap_comm": True},
            }
        )
    )
    got = ds_config(
        RoleTrainConfig(batch_size=8, micro_batch_size=4, zero_stage=2, deepspeed_config=str(file)), world=1
    )
    assert got["train_batch_size"] == 8 and got["bf16"] == {"enabled": False}  # auto filled, theirs kept
    assert got["zero_optimization"] == {"stage": 2, "overlap_comm": True}
    with pytest.raises(ConfigError, match="batch_size 8 must be a multiple of micro_batch_size 4 x 3 processes"):
        ds_config(RoleTrainConfig(batch_size=8, micro_batch_size=4), world=3)
    with pytest.raises(ConfigError, match=r"deepspeed_config .*missing.json does not exist"):
        ds_config(RoleTrainConfig(deepspeed_config=str(tmp_path / "missing.json")), world=1)
    with pytest.raises(ConfigError, match="zero_stage must be 0, 1, 2 or 3"):
        RoleTrainConfig(zero_stage=4)


def test_asking_for_deepspeed_without_it_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # as if not installed
    args = ["iterate", "--run", str(tmp_path / "r")]
    for kv in [*TINY_SAMPLES, "train.policy.engine=deepspeed"]:
        args += ["--set", kv]
    got = runner.invoke(app, args)
    assert got.exit_code == 2
    assert "train engine 'deepspeed' needs DeepSpeed: pip install 'reasoner[deepspeed]'" in got.output
    assert not (tmp_path / "r").exists()  # refused before the run folder was written


# ----------------------------------------------------------------------------- engine
@pytest.mark.slow
def test_every_zero_stage_gives_the_torch_engines_losses(tmp_path):
    got = job(
        "--matrix",
        "torch:0:0,deepspeed:0:0,deepspeed:1:0,deepspeed:2:0,deepspeed:3:0,torch:0:4,deepspeed:3:4",
        tmp=tmp_path,
    )
    for name in ("deepspeed:0:0", "deepspeed:1:0", "deepspeed:2:0", "deepspeed:3:0"):
        assert close(got[name], got["torch:0:0"]), (name, got)
    assert close(got["deepspeed:3:4"], got["torch:0:4"]), got  # LoRA under ZeRO-3
    assert got["torch:0:0"][2] < got["torch:0:0"][0]  # it learns


@pytest.mark.slow
@pytest.mark.parametrize("stage,lora", [(2, 0), (3, 4)])
def test_two_processes_give_the_losses_of_one_with_the_same_global_batch(tmp_path, stage, lora):
    args = ["--stage", str(stage), "--lora", str(lora), "--steps", "3"]
    one = job(*args, tmp=tmp_path)
    two = job(*args, ranks=2, tmp=tmp_path)
    assert close(one, two), (one, two)


@pytest.mark.slow
def test_sigkill_of_every_rank_resumes_to_the_uninterrupted_losses(tmp_path):
    args = ["--stage", "3", "--lora", "4", "--steps", "4"]
    whole = job(*args, tmp=tmp_path)
    state = str(tmp_path / "state")
    job(*args, "--state", state, "--save-at", "2", "--die-at", "2", ranks=2, tmp=tmp_path, expect_kill=True)
    rest = job(*args, "--state", state, "--resume", ranks=2, tmp=tmp_path)
    assert close(rest, whole[2:]), (rest, whole)  # N steps == k steps, SIGKILL, resume, N - k steps


@pytest.mark.slow
def test_the_export_of_a_sharded_model_loads_in_transformers(tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    job("--stage", "3", "--lora", "4", "--steps", "2", "--export", str(tmp_path / "two"), ranks=2, tmp=tmp_path)
    job("--stage", "3", "--lora", "4", "--steps", "2", "--export", str(tmp_path / "one"), tmp=tmp_path)
    a, b = (
        load_file(str(tmp_path / "one" / "model.safetensors")),
        load_file(str(tmp_path / "two" / "model.safetensors")),
    )
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not any("lora" in k for k in a)  # merged
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "two")
    from reasoner import models

    start = models.load("tiny").model
    ids = torch.tensor([[5, 6, 7, 8]])
    assert not torch.allclose(model(ids).logits, start(ids).logits)  # trained, not the start


@pytest.mark.slow
def test_iterate_trains_the_policy_with_deepspeed(tmp_path):
    run = tmp_path / "r"
    cmd = [sys.executable, "-m", "reasoner.cli", "iterate", "--run", str(run)]
    for kv in [*TINY_SAMPLES, "run.iterations=1", "train.policy.engine=deepspeed", "train.policy.zero_stage=3"]:
        cmd += ["--set", kv]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["iterations"]["1"]["train"]["status"] == "complete"
    assert (run / "iter_0001" / "policy" / "model.safetensors").exists()
