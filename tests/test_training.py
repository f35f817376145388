import math
import random

import pytest
import torch

from reasoner import models
from reasoner.config import RoleTrainConfig
from reasoner.records import Trajectory
from reasoner.training.engine import TorchEngine, lr_lambda
from reasoner.training.objectives import get_objective
from reasoner.training.objectives.rft import SFTExample, nll_sum, select


def _examples(n=8, seed=0):
    rng = random.Random(seed)
    return [
        SFTExample(
            [rng.randrange(3, 100) for _ in range(rng.randint(3, 6))],
            [rng.randrange(3, 100) for _ in range(rng.randint(2, 5))],
            f"e{i}",
        )
        for i in range(n)
    ]


def _engine(lora: int, total: int = 6, seed: int = 0):
    cfg = RoleTrainConfig(lora_rank=lora, batch_size=4, micro_batch_size=2, learning_rate=1e-2, warmup_steps=1)
    return TorchEngine(models.tiny_model(seed), cfg, total_steps=total)


@pytest.mark.parametrize("lora", [0, 4])
def test_one_step_changes_every_trainable_parameter(lora):
    engine = _engine(lora)
    before = {n: p.detach().clone() for n, p in engine.params.items()}
    # LoRA's B starts at zero, so A's gradient is zero on the first step: take two.
    for _ in range(2 if lora else 1):
        metrics = engine.train_step(_examples(4), get_objective("rft"))
    assert math.isfinite(metrics["loss"]) and metrics["loss"] > 0
    unchanged = [n for n, p in engine.params.items() if torch.equal(p, before[n])]
    assert not unchanged
    if lora:
        assert all("lora_" in n for n in engine.params)


@pytest.mark.parametrize("lora", [0, 4])
def test_n_steps_equal_k_steps_resume_and_the_rest(tmp_path, lora):
    data, objective = _examples(24), get_objective("rft")
    batches = [data[i : i + 4] for i in range(0, 24, 4)]
    straight = _engine(lora)
    losses = [straight.train_step(b, objective)["loss"] for b in batches]

    first = _engine(lora)
    resumed_losses = [first.train_step(b, objective)["loss"] for b in batches[:2]]
    first.save_state(tmp_path)
    torch.manual_seed(123)  # the resumed process starts with other RNG state
    second = _engine(lora, seed=0)
    second.load_state(tmp_path)
    assert second.step == 2
    resumed_losses += [second.train_step(b, objective)["loss"] for b in batches[2:]]
    assert resumed_losses == losses
    for name, p in straight.params.items():
        assert torch.equal(p, second.params[name]), name


def test_accumulation_equals_one_big_batch():
    data, objective = _examples(4), get_objective("rft")
    a = TorchEngine(models.tiny_model(0), RoleTrainConfig(lora_rank=0, batch_size=4, micro_batch_size=4), 3)
    b = TorchEngine(models.tiny_model(0), RoleTrainConfig(lora_rank=0, batch_size=4, micro_batch_size=1), 3)
    la, lb = a.train_step(data, objective)["loss"], b.train_step(data, objective)["loss"]
    assert la == pytest.approx(lb, rel=1e-5)
    for name, p in a.params.items():
        assert torch.allclose(p, b.params[name], atol=1e-6), name


def test_nll_sum_by_hand():
    # vocab 2, logits [0, 0] at every position: p = 0.5 for either token, -log p = ln 2.
    logits = torch.zeros(1, 3, 2)
    ids = torch.tensor([[0, 1, 0]])
    mask = torch.tensor([[0, 1, 1]])  # tokens 1 and 2 are trained: 2 * ln 2
    assert nll_sum(logits, ids, mask).item() == pytest.approx(2 * math.log(2))
    # logits [0, ln 3] favour token 1 with p = 3/4: trained tokens are 1 (p 3/4) and 0 (p 1/4).
    logits = torch.tensor([[[0.0, math.log(3)]] * 3])
    assert nll_sum(logits, ids, mask).item() == pytest.approx(-math.log(0.75) - math.log(0.25))


def test_lr_schedule_by_hand():
    f = lr_lambda(warmup=2, total=6)
    assert [round(f(s), 4) for s in range(7)] == [0.3333, 0.6667, 1.0, 0.75, 0.5, 0.25, 0.0]


def _traj(pid, text, correct, gold_steps=None):
    meta = {"gold_steps": gold_steps} if gold_steps is not None else {}
    return Trajectory(id=f"{pid}/{text}", problem_id=pid, prompt="", steps=[], text=text, correct=correct, meta=meta)


def test_select_keeps_correct_distinct_step_valid_samples():
    trajs = [
        _traj("a", "x", True, [True]),
        _traj("a", "x", True, [True]),  # duplicate text
        _traj("a", "y", True, [False, True]),  # right answer through a wrong step
        _traj("a", "z", False),
        _traj("b", "u", True, [None, True]),
        _traj("b", "v", True),
        _traj("b", "w", True),
    ]
    kept = select(trajs, require_steps=True, max_per_problem=2, seed=0)
    texts = sorted(t.text for t in kept)
    assert texts.count("x") == 1 and "y" not in texts and "z" not in texts
    assert sum(t.problem_id == "b" for t in kept) == 2 and len(kept) == 3
    loose = select(trajs, require_steps=False, max_per_problem=5, seed=0)
    assert sorted(t.text for t in loose) == ["u", "v", "w", "x", "y"]


def test_pure_losses_by_hand():
    from reasoner.training.objectives.implicit_prm import implicit_prm_loss
    from reasoner.training.objectives.judge_rl import policy_gradient_loss
    from reasoner.training.objectives.rft import sft_loss

    logp = torch.tensor([[-1.0, -2.0, -9.0], [-0.5, -9.0, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # padding never counts
    assert sft_loss(logp, mask).item() == pytest.approx(3.5)
    # REINFORCE: -(A_0 * (-3) + A_1 * (-0.5)) with A = (1, -2) -> 3 - 1 = 2
    assert policy_gradient_loss(logp, mask, torch.tensor([1.0, -2.0])).item() == pytest.approx(2.0)
    # implicit PRM: r = beta * sum(logp - ref); ref = logp - 1 on real tokens -> r = 0.5 * (2, 1)
    ref = logp - 1.0
    loss, r = implicit_prm_loss(logp, ref, mask, torch.tensor([1.0, 0.0]), beta=0.5)
    assert r.tolist() == pytest.approx([1.0, 0.5])
    # -log sigmoid(1) - log(1 - sigmoid(0.5)) = 0.31326 + 0.97408
    assert loss.item() == pytest.approx(0.313262 + 0.974077, abs=1e-5)


def test_completion_logprobs_match_full_logits():
    from reasoner.logprobs import completion_logprobs, pad_right, token_logprobs

    model = models.tiny_model(3)
    prompts, completions = [[5, 6, 7], [8, 9]], [[10, 11], [12, 13, 14]]
    logp, mask = completion_logprobs(model, prompts, completions, 0, "cpu", chunk=2)
    ids, attn = pad_right([p + c for p, c in zip(prompts, completions, strict=True)], 0, "cpu")
    full = token_logprobs(model(input_ids=ids, attention_mask=attn).logits, ids)
    assert mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert torch.allclose(logp[0, :2], full[0, 2:4]) and torch.allclose(logp[1], full[1, 1:4])
    assert logp[0, 2].item() == 0.0


def test_shared_prompt_prefix_runs_once_with_the_plain_forwards_values_and_gradients():
    """Rows that share a long prefix (a few-shot prompt) run it once: log-probs and gradients
    equal those of each row run alone, and the decoder sees the prefix as one row."""
    from reasoner import logprobs

    model = models.tiny_model(5)
    shared = list(range(3, 3 + 2 * logprobs.MIN_SHARED_PREFIX))
    prompts = [shared + [40, 41], shared + [42], shared + [43, 44, 45]]
    completions = [[50, 51, 52], [53], [54, 55]]
    assert logprobs.common_prefix([p + c for p, c in zip(prompts, completions, strict=True)]) == len(shared)
    seen = []
    hook = model.get_decoder().register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(kw["input_ids"].shape), with_kwargs=True
    )
    logp, mask = logprobs.completion_logprobs(model, prompts, completions, 0, "cpu")
    hook.remove()
    assert seen == [(1, len(shared)), (3, 5)]  # the prefix once, then each row's own 3-5 tokens
    (logp * mask).sum().backward()
    batched = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    alone_total = 0.0
    for row, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        alone, _ = logprobs.completion_logprobs(model, [p], [c], 0, "cpu")
        assert torch.allclose(logp[row, : len(c)], alone[0], atol=1e-5)
        alone_total = alone_total + alone.sum()
    alone_total.backward()
    for name, p in model.named_parameters():
        assert torch.allclose(batched[name], p.grad, atol=1e-5, rtol=1e-4), name
    assert mask.sum().item() == 6


def test_a_short_common_prefix_runs_the_plain_forward():
    from reasoner import logprobs

    model = models.tiny_model(5)
    seen = []
    hook = model.get_decoder().register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(kw["input_ids"].shape), with_kwargs=True
    )
    logprobs.completion_logprobs(model, [[3, 4, 5], [3, 4, 6, 7]], [[8], [9]], 0, "cpu")
    hook.remove()
    assert seen == [(2, 5)]


def test_a_sliding_window_shorter_than_the_rows_runs_the_plain_forward():
    from reasoner import logprobs

    model = models.tiny_model(5)
    model.config.sliding_window = 8  # rows of 40 tokens: one cache of the prefix would not stand for it
    shared = list(range(3, 3 + 2 * logprobs.MIN_SHARED_PREFIX))
    seen = []
    hook = model.get_decoder().register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(kw["input_ids"].shape), with_kwargs=True
    )
    logprobs.completion_logprobs(model, [shared + [40], shared + [41]], [[50], [51]], 0, "cpu")
    hook.remove()
    assert seen == [(2, len(shared) + 2)]
