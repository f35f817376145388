"""The trainer over engines by role: an objective that updates two roles in one step (as PRIME
RL updates the implicit PRM and the policy from one batch)."""

import math
import random

import torch

from reasoner import models
from reasoner.config import RoleTrainConfig
from reasoner.training.engine import TorchEngine
from reasoner.training.objectives import get_objective
from reasoner.training.objectives.implicit_prm import PRMExample
from reasoner.training.trainer import Trainer


class RewardThenPolicy:
    """Two roles from one batch: the implicit PRM's cross-entropy, then SFT of the policy."""

    name = "reward-then-policy"
    roles = ("reward", "policy")

    def __init__(self):
        self.parts = {"reward": get_objective("implicit_prm", beta=0.5), "policy": get_objective("rft")}

    def for_role(self, role):
        return self.parts[role]


def _batches(n=4, size=2, seed=0):
    rng = random.Random(seed)

    def one():
        c = [rng.randrange(3, 100) for _ in range(rng.randint(2, 4))]
        return PRMExample([rng.randrange(3, 100) for _ in range(3)], c, [-4.0] * len(c), float(rng.random() < 0.5))

    return [[one() for _ in range(size)] for _ in range(n)]


def _trainer(total=4):
    cfg = RoleTrainConfig(lora_rank=0, batch_size=2, micro_batch_size=1, learning_rate=1e-2, warmup_steps=1)
    engines = {role: TorchEngine(models.tiny_model(seed), cfg, total) for seed, role in enumerate(("policy", "reward"))}
    return Trainer(engines, RewardThenPolicy())


def test_one_step_updates_every_parameter_of_both_roles():
    trainer = _trainer()
    before = {r: {n: p.detach().clone() for n, p in e.params.items()} for r, e in trainer.engines.items()}
    metrics = trainer.train_step(_batches(1)[0])
    assert math.isfinite(metrics["loss"]) and metrics["loss"] == metrics["reward/loss"] + metrics["policy/loss"]
    for role, engine in trainer.engines.items():
        assert all(not torch.equal(p, before[role][n]) for n, p in engine.params.items()), role
    assert trainer.step == 1


def test_n_steps_equal_k_steps_a_resume_and_the_rest(tmp_path):
    batches = _batches(4)
    straight = _trainer()
    losses = [straight.train_step(b)["loss"] for b in batches]
    first = _trainer()
    got = [first.train_step(b)["loss"] for b in batches[:2]]
    first.save_state(tmp_path)
    torch.manual_seed(99)
    second = _trainer()
    second.load_state(tmp_path)
    got += [second.train_step(b)["loss"] for b in batches[2:]]
    assert got == losses
    for role in ("policy", "reward"):
        for name, p in straight.engines[role].params.items():
            assert torch.equal(p, second.engines[role].params[name]), (role, name)


def test_an_objective_without_an_engine_for_its_role_is_refused():
    import pytest

    with pytest.raises(ValueError, match=r"updates \['reward'\] but has no engine"):
        Trainer({"policy": _trainer().engines["policy"]}, RewardThenPolicy())
