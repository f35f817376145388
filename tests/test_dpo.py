"""DPO (arXiv 2305.18290): the loss against hand-computed numbers, the pairs it builds, and a run
through `reasoner iterate` with tree-search step pairs."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from reasoner import models
from reasoner.cli import app
from reasoner.config import RoleTrainConfig
from reasoner.records import Pair, Trajectory
from reasoner.training.engine import TorchEngine
from reasoner.training.objectives import get_objective
from reasoner.training.objectives.data import RolloutData
from reasoner.training.objectives.dpo import dpo_loss, outcome_pairs, split_shared


def test_dpo_loss_by_hand():
    # margin = (-1 - -2) - (-3 - -2) = 1 - (-1) = 2; loss = -log sigmoid(0.5 * 2) = log(1 + e^-1)
    losses, margins = dpo_loss(
        torch.tensor([-1.0, -5.0]),
        torch.tensor([-3.0, -5.0]),
        torch.tensor([-2.0, -5.0]),
        torch.tensor([-2.0, -5.0]),
        0.5,
    )
    assert margins.tolist() == [2.0, 0.0]
    assert losses.tolist() == pytest.approx([math.log(1 + math.exp(-1)), math.log(2)])


def _t(tid, pid, text, correct):
    return Trajectory(tid, pid, "Q:", text.split("\n"), text, correct=correct)


def test_outcome_pairs_pair_correct_with_incorrect_of_one_problem():
    ts = [_t("a", "p", "1", True), _t("b", "p", "2", False), _t("c", "p", "3", False), _t("d", "q", "4", True)]
    ts.append(_t("e", "p", "2", False))  # same text as b: not a second rejected sample
    pairs = outcome_pairs(ts, max_per_problem=4, seed=0)
    assert sorted((g.id, b.id) for g, b in pairs) == [("a", "b"), ("a", "c")]  # q has no incorrect sample


def test_step_pairs_compare_only_the_differing_steps():
    assert split_shared("3 + 2 = 5\n5 - 1 = 4\n", "3 + 2 = 5\n5 - 1 = 3\n", "\n") == (
        "3 + 2 = 5\n",
        "5 - 1 = 4\n",
        "5 - 1 = 3\n",
    )
    assert split_shared("a = 1\n", "b = 2\n", "\n") == ("", "a = 1\n", "b = 2\n")


def test_examples_carry_reference_logprobs_and_one_step_trains(tiny):
    tok = tiny.tokenizer
    ts = [_t("a", "p", "5", True), _t("b", "p", "6", False)]
    pairs = [Pair("p", "x = 1\ny", "x = 1\nz", weight=0.5, source="mcts")]
    calls = []

    def reference(ids):
        calls.append(len(ids))
        return [[-1.0] * len(c) for _, c in ids]

    data = RolloutData(ts, tok, seed=0, pairs=pairs, reference=reference, options={"pairs": ("outcome", "step")})
    examples = get_objective("dpo", beta=0.1).from_rollouts(data)
    assert calls == [4]  # one scoring pass for both sides of both pairs
    outcome, step = sorted(examples, key=lambda e: e.kind)
    assert (outcome.kind, step.kind, step.weight) == ("outcome", "step", 0.5)
    assert tok.decode(step.prompt_ids).endswith("Q:x = 1\n") and tok.decode(step.chosen_ids) == "y"
    assert outcome.ref_chosen == -float(len(outcome.chosen_ids))
    engine = TorchEngine(models.tiny_model(0), RoleTrainConfig(lora_rank=0, batch_size=2, micro_batch_size=1), 2)
    before = {n: p.detach().clone() for n, p in engine.params.items()}
    metrics = engine.train_step(examples, get_objective("dpo", beta=0.1))
    assert math.isfinite(metrics["loss"]) and all(not torch.equal(p, before[n]) for n, p in engine.params.items())


@pytest.mark.slow
def test_dpo_through_iterate_with_mcts_step_pairs(tmp_path):
    sets = [
        "model.policy=tiny",
        "run.seed=3",
        "run.iterations=1",
        "run.baseline_eval=false",
        "task.train_size=4",
        "task.test_size=2",
        "task.prompt=zeroshot",
        "generate.searcher=mcts",
        "generate.samples=4",
        "generate.temperature=1.0",
        "search.mcts_simulations=4",
        "search.mcts_expansions=2",
        "search.step_tokens=6",
        "search.mcts_value=none",
        "search.pair_margin=0.0",
        "verify.require_steps=false",
        "train.policy.objective=dpo",
        "train.policy.lora_rank=0",
        "train.policy.micro_batch_size=2",
        "train.policy.batch_size=2",
        "train.policy.max_steps=2",
        "evaluate.k=0",
        "evaluate.max_new_tokens=4",
    ]
    result = CliRunner().invoke(
        app, ["iterate", "--run", str(tmp_path / "r"), *[x for s in sets for x in ("--set", s)]]
    )
    assert result.exit_code == 0, result.output
    train = json.loads((tmp_path / "r" / "manifest.json").read_text())["iterations"]["1"]["train"]["metrics"]
    n_pairs = len((tmp_path / "r" / "iter_0001" / "pairs.jsonl").read_text().splitlines())
    assert n_pairs > 0 and train["examples"] >= 1 and train["steps"] >= 1
    assert (tmp_path / "r" / "iter_0001" / "policy" / "model.safetensors").exists()


@pytest.mark.parametrize("objective", ["rft", "dpo"])
def test_scrambled_gold_step_labels_leave_training_data_unchanged_without_the_oracle(tiny, objective):
    """Gold step labels are for evaluation: without `verify.require_steps` (the oracle) no
    objective's examples depend on them; with it, RFT's do."""
    import random

    from reasoner.trainphases import training_view

    ts = [_t(f"s{i}", f"p{i % 3}", f"{i} + 1 = {i + 1}\nThe answer is {i + 1}.", i % 2 == 0) for i in range(12)]
    for t in ts:
        t.meta["gold_steps"] = [True, True]
    scrambled = [
        Trajectory(**{**t.__dict__, "meta": {"gold_steps": [random.Random(i).random() < 0.5, False]}})
        for i, t in enumerate(ts)
    ]

    def examples(trajs, oracle):
        data = RolloutData(
            training_view(trajs, oracle),
            tiny.tokenizer,
            seed=1,
            require_steps=oracle,
            reference=lambda ids: [[-1.0] * len(c) for _, c in ids],
            options={"pairs": ("outcome",)},
        )
        return get_objective(objective).from_rollouts(data)

    assert examples(ts, oracle=False) == examples(scrambled, oracle=False) != []
    if objective == "rft":
        assert examples(ts, oracle=True) != examples(scrambled, oracle=True)
