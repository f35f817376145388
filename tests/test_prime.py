"""PRIME RL (arXiv 2502.01456): advantages and the clipped loss by hand, the two-model step
(implicit PRM, then policy) through the trainer, and a run of the `prime` recipe."""

import json
import math
import random

import pytest
import torch
from tinyrun import TINY_SAMPLES
from typer.testing import CliRunner

from reasoner import models
from reasoner.cli import app
from reasoner.config import RoleTrainConfig
from reasoner.training.engine import TorchEngine
from reasoner.training.objectives import get_objective
from reasoner.training.objectives.prime import Group, ppo_clip_loss, prime_advantages
from reasoner.training.trainer import Trainer


def test_prime_advantages_by_hand():
    # per-token means: sample 0 (1 + 1) / 2 = 1, sample 1 0 / 1 = 0; leave-one-out baselines 0 and 1.
    # shaped: [[1, 1], [-1, pad]]; returns: [[2, 1], [-1, 0]]; outcome RLOO: [1 - 0, 0 - 1] = [1, -1]
    adv = prime_advantages(
        torch.tensor([[1.0, 1.0], [0.0, 2.0]]), torch.tensor([[1.0, 1.0], [1.0, 0.0]]), torch.tensor([1.0, 0.0])
    )
    assert adv.tolist() == [[3.0, 2.0], [-2.0, 0.0]]


def test_ppo_clip_loss_by_hand():
    mask = torch.ones(1, 2)
    adv = torch.tensor([[1.0, -1.0]])
    assert ppo_clip_loss(torch.zeros(1, 2), torch.zeros(1, 2), adv, mask, 0.2).item() == pytest.approx(0.0)
    # ratio e^0.5 = 1.6487: for A = 1 the clip holds it at 1.2; for A = -1 min picks -1.6487
    logp = torch.tensor([[0.5, 0.5]])
    got = ppo_clip_loss(logp, torch.zeros(1, 2), adv, mask, 0.2).item()
    assert got == pytest.approx(-(1.2 - math.exp(0.5)), abs=1e-6)


def _groups(n=4, k=3, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        cs = [[rng.randrange(3, 100) for _ in range(rng.randint(2, 4))] for _ in range(k)]
        lp = [[-4.0] * len(c) for c in cs]
        out.append(Group([rng.randrange(3, 100) for _ in range(3)], cs, [1.0, 0.0, 1.0][:k], lp, lp))
    return out


def _trainer():
    cfg = RoleTrainConfig(lora_rank=0, batch_size=2, micro_batch_size=1, learning_rate=1e-2, warmup_steps=1)
    engines = {r: TorchEngine(models.tiny_model(i), cfg, 3) for i, r in enumerate(("policy", "reward"))}
    return Trainer(engines, get_objective("prime", beta=0.5))


def test_two_model_step_changes_both_and_resumes_exactly(tmp_path):
    groups = _groups()
    batches = [groups[:2], groups[2:]]
    straight = _trainer()
    before = {r: {n: p.detach().clone() for n, p in e.params.items()} for r, e in straight.engines.items()}
    losses = [straight.train_step(batches[0])]
    for role, engine in straight.engines.items():
        assert all(not torch.equal(p, before[role][n]) for n, p in engine.params.items()), role
    assert math.isfinite(losses[0]["policy/loss"]) and math.isfinite(losses[0]["reward/loss"])
    losses.append(straight.train_step(batches[1]))
    first = _trainer()
    got = [first.train_step(batches[0])]
    first.save_state(tmp_path)
    second = _trainer()
    second.load_state(tmp_path)
    got.append(second.train_step(batches[1]))
    assert [x["loss"] for x in got] == [x["loss"] for x in losses]
    for role in ("policy", "reward"):
        for name, p in straight.engines[role].params.items():
            assert torch.equal(p, second.engines[role].params[name]), (role, name)


PRIME_SETS = [
    *TINY_SAMPLES,
    "run.recipe=prime",
    "run.iterations=2",
    "train.prime_band=[0.0, 1.0]",
    "train.policy.lora_rank=0",
    "train.policy.micro_batch_size=1",
    "train.policy.batch_size=2",
    "train.policy.save_every=1",
    "train.reward.lora_rank=0",
]


@pytest.mark.slow
def test_prime_recipe_trains_policy_and_reward_and_chains_them(tmp_path):
    run = tmp_path / "r"
    result = CliRunner().invoke(app, ["iterate", "--run", str(run), *[x for s in PRIME_SETS for x in ("--set", s)]])
    assert result.exit_code == 0, result.output
    manifest = json.loads((run / "manifest.json").read_text())["iterations"]
    assert set(manifest["1"]) == {"generate", "verify", "prime", "evaluate"}
    metrics = manifest["1"]["prime"]["metrics"]
    assert metrics["prompts_in_band"] == metrics["prompts_total"] == 8 and metrics["steps"] == 4
    assert manifest["1"]["prime"]["artefacts"] == ["iter_0001/policy", "iter_0001/reward"]
    # iteration 2 starts from iteration 1's policy and reward model (roles from the manifest)
    from reasoner.run import RunDir
    from reasoner.session import Session

    session = Session(RunDir(run), RunDir(run).saved_config())
    assert session.policy_spec(2).endswith("iter_0001/policy") and session.reward_spec(2).endswith("iter_0001/reward")
    # the step-level evaluation scores the last PRIME-trained policy and PRM, not the start
    sets = ["--set", 'label.labellers=["implicit"]', "--problems", "2", "--samples", "1", "--json"]
    result = CliRunner().invoke(app, ["evaluate", "--steps", "--run", str(run), "--out", str(tmp_path / "s"), *sets])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s" / "steps.json").read_text())["policy"].endswith("iter_0002/policy")


def test_prime_phase_command_refuses_a_run_whose_recipe_has_no_prime(tmp_path):
    run = tmp_path / "r"
    sets = [x for s in ["model.policy=tiny", "task.train_size=2", "task.prompt=zeroshot"] for x in ("--set", s)]
    result = CliRunner().invoke(app, ["prime", "--run", str(run), *sets])
    assert result.exit_code == 2
    assert "phase 'prime' is not in this run's recipe; its phases: generate, verify, label, train, evaluate" in (
        " ".join(result.output.split())
    )
    assert not run.exists()
