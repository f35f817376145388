"""Labellers and reward-model objectives on scripted backends and tiny models."""

import math

import pytest
import torch

from reasoner import models
from reasoner.config import LabelConfig, RoleTrainConfig
from reasoner.generation import Completion
from reasoner.records import Problem, Trajectory
from reasoner.rewards import LabelContext, get_labeller
from reasoner.rewards.judge import verdict
from reasoner.tasks import get_pack
from reasoner.training.engine import TorchEngine
from reasoner.training.objectives import get_objective
from reasoner.training.objectives.implicit_prm import PRMExample
from reasoner.training.objectives.judge_rl import JudgeExample, leave_one_out

PROBLEM = Problem(
    "p", "arith", "Ann has 9 cards. Ann gives away 3 cards. Ann finds 2 more cards.", "8", meta={"chain": [9, 6, 8]}
)


class ScriptedBackend:
    """Completes a prefix by a fixed rule: after a wrong step ("5 + 5") it always fails; after a
    good first step, half its samples succeed."""

    tokenizer = None

    def generate(self, prompts, sampling, progress=None):
        outs = []
        for i, prompt in enumerate(prompts):
            if "9 - 3 = 5" in prompt:
                text = "5 + 2 = 7\nThe answer is 7."
            else:
                text = "6 + 2 = 8\nThe answer is 8." if i % 2 == 0 else "The answer is 9."
            outs.append(Completion([], [], text, "eos"))
        return outs


def _ctx(**settings):
    pack = get_pack("arith")
    return LabelContext(
        problems={"p": PROBLEM},
        pack=pack,
        settings=LabelConfig(**settings),
        seed=0,
        batch_size=8,
        policy="scripted",
        backend_for=lambda spec: ScriptedBackend(),
        is_correct=lambda problem, text: "answer is 8" in text,
    )


def test_mc_labels_from_scripted_completions():
    good = Trajectory("g", "p", "PROMPT\n", ["9 - 3 = 6", "6 + 2 = 8", "The answer is 8."], "", correct=True)
    bad = Trajectory("b", "p", "PROMPT\n", ["9 - 3 = 5", "5 + 2 = 7", "The answer is 7."], "", correct=False)
    labels = get_labeller("mc").label([good, bad], _ctx(mc_samples=4))
    # good: each prefix -> 2 of 4 completions succeed (0.5); the last step is the outcome (1.0)
    assert labels[0].labels == [0.5, 0.5, 1.0] and labels[0].meta["hard"] == [1.0, 1.0, 1.0]
    # bad: after "9 - 3 = 5" nothing succeeds
    assert labels[1].labels == [0.0, 0.0, 0.0] and labels[1].meta["hard"] == [0.0, 0.0, 0.0]


def test_mc_reuses_tree_values():
    t = Trajectory(
        "m", "p", "PROMPT\n", ["9 - 3 = 6", "The answer is 8."], "", correct=True, meta={"node_q": [0.75, 1.0]}
    )

    class Refuses(ScriptedBackend):
        def generate(self, prompts, sampling, progress=None):
            assert not prompts, "tree values must be reused, not resampled"
            return []

    ctx = _ctx(mc_samples=4)
    ctx.backend_for = lambda spec: Refuses()
    assert get_labeller("mc").label([t], ctx)[0].labels == [0.75, 1.0]


def test_gold_labeller_uses_the_pack():
    t = Trajectory("x", "p", "", ["9 - 3 = 6", "6 + 2 = 9", "Nice."], "")
    (lab,) = get_labeller("gold").label([t], _ctx())
    assert lab.labels == [1.0, 0.0, 1.0]


def test_implicit_labeller_is_zero_until_phi_moves_and_matches_hand_sums(tiny):
    from reasoner.generation.hf import HFBackend

    phi = models.load("tiny:1")
    backends = {
        "ref": HFBackend(tiny.model, tiny.tokenizer),
        "phi": HFBackend(phi.model, phi.tokenizer),
    }
    t = Trajectory("x", "p", "Q: 1+1?\n", ["ab", "cd"], "ab\ncd")
    ctx = _ctx(implicit_beta=0.5)
    ctx.backend_for = backends.__getitem__
    ctx.reward_spec = ctx.reference_spec = "ref"
    assert get_labeller("implicit").label([t], ctx)[0].labels == [0.0, 0.0]
    ctx.reward_spec = "phi"
    (lab,) = get_labeller("implicit").label([t], ctx)
    pairs = [(tiny.tokenizer("Q: 1+1?\n")["input_ids"], tiny.tokenizer("ab\ncd")["input_ids"])]
    a, b = backends["phi"].score_ids(pairs)[0], backends["ref"].score_ids(pairs)[0]
    token = [0.5 * (x - y) for x, y in zip(a, b, strict=True)]  # chars: a b \n c d
    assert lab.labels == pytest.approx([sum(token[:2]), sum(token[2:])], abs=1e-5)
    assert lab.meta["outcome"] == pytest.approx(sum(token), abs=1e-5)


def test_verdict_parsing():
    assert verdict("The step is right. Verdict: GOOD") == 1.0
    assert verdict("Verdict: good ... no wait. Verdict: **BAD**") == 0.0
    assert verdict("I am not sure.") is None


def test_leave_one_out_by_hand():
    # rewards 1, 0, 0, 1: baselines (0+0+1)/3, (1+0+1)/3, ... -> advantages 2/3, -2/3, -2/3, 2/3
    adv = leave_one_out(torch.tensor([[1.0, 0.0, 0.0, 1.0]]))
    assert adv[0].tolist() == pytest.approx([2 / 3, -2 / 3, -2 / 3, 2 / 3])
    assert leave_one_out(torch.tensor([[1.0, 1.0]]))[0].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("name", ["implicit_prm", "judge_rl"])
def test_reward_objectives_train(name):
    engine = TorchEngine(models.tiny_model(0), RoleTrainConfig(lora_rank=0, batch_size=2, micro_batch_size=2), 3)
    if name == "implicit_prm":
        batch = [PRMExample([5, 6, 7], [8, 9], [-4.0, -4.0], 1.0), PRMExample([5, 6], [10], [-4.0], 0.0)]
        objective = get_objective(name, beta=0.5)
    else:
        batch = [JudgeExample([5, 6, 7], [8, 9], 0.5), JudgeExample([5, 6], [10, 11, 12], -0.5)]
        objective = get_objective(name)
    before = {n: p.detach().clone() for n, p in engine.params.items()}
    metrics = engine.train_step(batch, objective)
    assert math.isfinite(metrics["loss"])
    assert all(not torch.equal(p, before[n]) for n, p in engine.params.items())


def test_implicit_prm_loss_by_hand():
    # A uniform model over 128 tokens gives log p = -ln 128 for every token. With ref = -ln 128
    # too, r = 0 and the loss is ln 2 whatever the label.
    model = models.tiny_model(0)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    ex = PRMExample([5, 6], [7, 8], [-math.log(128)] * 2, 1.0)
    loss, units, _ = get_objective("implicit_prm", beta=1.0).loss(model, [ex], 0, "cpu")
    assert units == 1 and loss.item() == pytest.approx(math.log(2), abs=1e-5)


def test_mc_samples_a_shared_prefix_once():
    seen = []

    class Counting(ScriptedBackend):
        def generate(self, prompts, sampling, progress=None):
            seen.extend(prompts)
            return super().generate(prompts, sampling, progress)

    a = Trajectory("a", "p", "PROMPT\n", ["9 - 3 = 6", "6 + 2 = 8", "The answer is 8."], "", correct=True)
    b = Trajectory("b", "p", "PROMPT\n", ["9 - 3 = 6", "6 + 3 = 9", "The answer is 9."], "", correct=False)
    ctx = _ctx(mc_samples=4)
    ctx.backend_for = lambda spec: Counting()
    la, lb = get_labeller("mc").label([a, b], ctx)
    # prefixes: "9 - 3 = 6" (shared), "...6 + 2 = 8", "...6 + 3 = 9" -> 3 distinct x 4 samples
    assert len(seen) == 12 and len(set(seen)) == 3
    assert la.labels[0] == lb.labels[0] == 0.5


def test_good_probability_by_hand():
    from reasoner.rewards.selfjudge import good_probability

    # exp(-1) / (exp(-1) + exp(-2)) = 1 / (1 + e^-1) = 0.731059
    assert good_probability(-1.0, -2.0) == pytest.approx(0.7310586, abs=1e-7)
    assert good_probability(-2.0, -1.0) == pytest.approx(0.2689414, abs=1e-7)
    assert good_probability(-3.0, -3.0) == 0.5
    assert good_probability(0.0, -2000.0) == 1.0 and good_probability(-2000.0, 0.0) == 0.0  # no overflow


def test_spark_self_judge_scores_the_verdicts_likelihood():
    """The labeller `spark` teacher-forces both verdicts after the pointwise prompt: each
    solution's score is P(GOOD) against P(BAD), so solutions the model would all call BAD
    greedily are still ordered."""
    from reasoner.training.objectives.spark import BAD, GOOD

    class Verdicts(ScriptedBackend):  # no chat template: plain turns
        calls: list[tuple[str, str]] = []

        def score(self, prompts, continuations):
            out = []
            for p, c in zip(prompts, continuations, strict=True):
                self.calls.append((p, c))
                right = "6 + 2 = 8" in p
                # log-probs per token: BAD is always likelier; less so for the right solution
                out.append([-1.0, -1.5] if c == GOOD else [-0.5, -0.5 if right else -0.1])
            return out

    steps = (["9 - 3 = 6", "6 + 2 = 8", "The answer is 8."], ["9 - 3 = 5", "5 + 2 = 7", "The answer is 7."])
    good = Trajectory("g", "p", "PROMPT\n", steps[0], "\n".join(steps[0]), correct=True)
    bad = Trajectory("b", "p", "PROMPT\n", steps[1], "\n".join(steps[1]), correct=False)
    ctx = _ctx()
    ctx.backend_for = lambda spec: Verdicts()
    labels = get_labeller("spark").label([good, bad], ctx)
    # good: g = -2.5, b = -1.0 -> 1 / (1 + e^1.5) = 0.182426; bad: b = -0.6 -> 1 / (1 + e^1.9) = 0.130108
    assert labels[0].labels == pytest.approx([0.182426] * 3, abs=1e-6)
    assert labels[1].labels == pytest.approx([0.130108] * 3, abs=1e-6)
    assert labels[0].meta["solution"] == labels[0].labels[0]
    assert {c for _, c in Verdicts.calls} == {GOOD, BAD} and len(Verdicts.calls) == 4
    assert all("9 - 3 = 6\n6 + 2 = 8" in p or "9 - 3 = 5\n5 + 2 = 7" in p for p, _ in Verdicts.calls)
