"""Policy training without gold step labels: DPO (arXiv 2305.18290: its loss by hand, its pairs,
a run through iterate), the oracle kept out of training data, and selection by process rewards."""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from tinyrun import TINY_SAMPLES
from typer.testing import CliRunner

from reasoner import models
from reasoner.cli import app
from reasoner.config import RoleTrainConfig
from reasoner.ranks import Ranks
from reasoner.records import Pair, Trajectory
from reasoner.run import StateStore
from reasoner.training.engine import TorchEngine
from reasoner.training.objectives import get_objective
from reasoner.training.objectives.data import RolloutData
from reasoner.training.objectives.dpo import DPOExample, dpo_loss, outcome_pairs, rpo_loss, split_shared
from reasoner.training.selection import pair_accuracy
from reasoner.trainphases import _logprobs


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


def test_rpo_loss_by_hand():
    # Iterative RPO: DPO's loss minus alpha * chosen log-prob per token
    # pair 1: 0.5 - 0.5 * (-6 / 3) = 1.5; pair 2: 1.0 - 0.5 * (-2 / 4) = 1.25
    out = rpo_loss(torch.tensor([0.5, 1.0]), torch.tensor([-6.0, -2.0]), torch.tensor([3.0, 4.0]), 0.5)
    assert out.tolist() == pytest.approx([1.5, 1.25])
    plain = rpo_loss(torch.tensor([0.7]), torch.tensor([-9.0]), torch.tensor([3.0]), 0.0)
    assert plain.tolist() == pytest.approx([0.7])


def test_dpo_with_nll_adds_the_chosen_nll_per_token(tiny):
    """DPO(nll=a)'s loss is plain DPO's plus a times each pair's chosen NLL per token, the
    chosen completion's log-probs read in the same forward."""
    tok = tiny.tokenizer
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    batch = [
        DPOExample(ids("Q: 2 + 3"), ids(" 5 done"), ids(" 6"), -4.0, -3.0),
        DPOExample(ids("Q: 1 + 1"), ids(" 2"), ids(" 3 no"), -2.0, -5.0),
    ]
    plain_loss, n, plain = get_objective("dpo", beta=0.1).loss(tiny.model, batch, tok.pad_token_id, "cpu")
    rpo, _, metrics = get_objective("dpo", beta=0.1, nll=0.5).loss(tiny.model, batch, tok.pad_token_id, "cpu")
    assert n == 2 and metrics["chosen_nll_sum"] > 0
    assert metrics["chosen_nll_sum"] == pytest.approx(plain["chosen_nll_sum"])
    assert float(rpo - plain_loss) == pytest.approx(0.5 * metrics["chosen_nll_sum"], rel=1e-5)


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


def test_a_reference_pass_is_kept_for_the_resume_and_only_for_the_same_model_and_sequences(tmp_path, capsys):
    """trainphases._logprobs: the pass goes to the phase's train_state folder; the same (model,
    sequences) reads it back exactly, a different model or sequence list runs the pass again."""
    calls = []

    class Backend:
        def score_ids(self, pairs, progress=None):
            calls.append(len(pairs))
            return [[-0.1 * (i + 1) / 3] * len(c) for i, (_, c) in enumerate(pairs)]

    store = StateStore(tmp_path / "train_state_mstep")
    s = SimpleNamespace(
        run=SimpleNamespace(state_dir=lambda k, phase: store, ranks=Ranks()), backend=lambda _: Backend()
    )
    pairs = [([1, 2], [3, 4, 5]), ([1], [6])]
    first = _logprobs(s, 2, "mstep", "reward@1", pairs, "reference")
    assert calls == [2] and [p.name for p in store.folder.iterdir()] == ["reference.rows.safetensors"]
    again = _logprobs(s, 2, "mstep", "reward@1", pairs, "reference")
    assert calls == [2] and again == first  # read back, bit for bit (float64 on disk)
    assert "iter 2 mstep reference: read back (2 sequences" in capsys.readouterr().err
    _logprobs(s, 2, "mstep", "policy@1", pairs, "reference")  # another model
    _logprobs(s, 2, "mstep", "policy@1", pairs[:1], "reference")  # other sequences
    assert calls == [2, 2, 1]
    (store.folder / "reference.rows.safetensors").write_bytes(b"not safetensors")  # a damaged file
    assert _logprobs(s, 2, "mstep", "reward@1", pairs, "reference") == first and calls == [2, 2, 1, 2]
    store.clear()
    assert not store.folder.exists()  # the phase's end takes the kept pass with it


DPO_MCTS = [  # DPO on MCTS step pairs, tiny model: one iteration in seconds
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


@pytest.mark.slow
def test_dpo_through_iterate_with_mcts_step_pairs(tmp_path):
    sets = DPO_MCTS
    result = CliRunner().invoke(
        app, ["iterate", "--run", str(tmp_path / "r"), *[x for s in sets for x in ("--set", s)]]
    )
    assert result.exit_code == 0, result.output
    train = json.loads((tmp_path / "r" / "manifest.json").read_text())["iterations"]["1"]["train"]["metrics"]
    n_pairs = len((tmp_path / "r" / "iter_0001" / "pairs.jsonl").read_text().splitlines())
    assert n_pairs > 0 and train["examples"] >= 1 and train["steps"] >= 1
    assert (tmp_path / "r" / "iter_0001" / "policy" / "model.safetensors").exists()
    # the reference pass over the pairs (minutes on a CPU at full size) reports its progress
    assert f"iter 1 train reference: {2 * train['examples']}/{2 * train['examples']} (100%)" in result.output
    # train.dpo_nll (Iterative RPO) reaches the loss: the same data and start, each step's loss
    # higher by the chosen samples' NLL; a policy objective that is not DPO refuses the key
    first = _steps(tmp_path / "r")[0]
    rpo = CliRunner().invoke(
        app,
        ["iterate", "--run", str(tmp_path / "rpo"), *[x for s in [*sets, "train.dpo_nll=1.0"] for x in ("--set", s)]],
    )
    assert rpo.exit_code == 0, rpo.output
    first_rpo = _steps(tmp_path / "rpo")[0]
    assert first_rpo["chosen_nll_sum"] == pytest.approx(first["chosen_nll_sum"])
    # (step 1 starts at the reference: margins 0, so the plain loss is ln 2 x the mean pair weight)
    assert first["margin_sum"] == 0 and first_rpo["loss"] > first["loss"] + 1.0
    refused = CliRunner().invoke(
        app, ["iterate", "--run", str(tmp_path / "x"), "--set", "model.policy=tiny", "--set", "train.dpo_nll=1.0"]
    )
    assert refused.exit_code != 0 and "train.dpo_nll" in refused.output and "'rft'" in refused.output


def _steps(run):
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [x for x in lines if x.get("phase") == "train" and "step" in x]


@pytest.mark.parametrize("objective", ["rft", "dpo", "cream", "mutual", "spark"])
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
            options={
                "pairs": ("outcome",),
                "current": {t.id: float(i % 5) for i, t in enumerate(trajs)},  # CREAM's two rankings
                "previous": {t.id: float(i % 3) for i, t in enumerate(trajs)},
            },
        )
        return get_objective(objective).from_rollouts(data)

    assert examples(ts, oracle=False) == examples(scrambled, oracle=False) != []
    if objective == "rft":
        assert examples(ts, oracle=True) != examples(scrambled, oracle=True)


def test_threshold_calibration_by_hand():
    from reasoner.training.selection import RULES, calibrate

    # scores of correct: 0.9, 0.6, 0.4; incorrect: 0.5, 0.2. t = 0.6 keeps 2/3 correct and
    # rejects 2/2 incorrect: balanced accuracy (2/3 + 1) / 2 = 0.833, the best; t = 0.4 gives
    # (1 + 1/2) / 2 = 0.75 and t = 0.9 gives (1/3 + 1) / 2 = 0.667.
    assert calibrate([0.9, 0.6, 0.4, 0.5, 0.2], [True, True, True, False, False]) == 0.6
    assert calibrate([0.3, 0.7], [True, True]) == 0.3  # one class: keep all
    assert RULES.lookup("min")([0.5, -1.0, 2.0]) == -1.0 and RULES.lookup("sum")([0.5, -1.0, 2.0]) == 1.5


def test_pair_accuracy_by_hand():
    # problem a: correct 0.9 and 0.2 against incorrect 0.5: 0.9 > 0.5 wins, 0.2 < 0.5 loses (1 of 2);
    # problem b: correct 0.3 against incorrect 0.3 (a tie, 1/2) and 0.1 (a win): 1.5 of 2;
    # problem c: only correct samples, no pair. (1 + 1.5) / 4 = 0.625
    rows = [("a", True, 0.9), ("a", True, 0.2), ("a", False, 0.5), ("b", True, 0.3), ("b", False, 0.3)]
    rows += [("b", False, 0.1), ("c", True, 0.7)]
    assert pair_accuracy(rows) == (0.625, 4)
    assert pair_accuracy([("a", False, 0.9), ("b", True, 0.1)])[1] == 0  # never within one problem
    assert math.isnan(pair_accuracy([])[0])


def test_select_by_reward_keeps_correct_samples_above_the_calibrated_threshold():
    from reasoner.config import TrainConfig
    from reasoner.trainphases import select_by_reward

    ts = []
    for i, (score, ok) in enumerate([(0.9, True), (0.6, True), (0.4, True), (0.5, False), (0.2, False)]):
        t = _t(f"s{i}", "p", f"{i}", ok)
        t.step_rewards["mc"] = [1.0, score]
        ts.append(t)
    ts.append(_t("unscored", "p", "9", True))
    kept, metrics = select_by_reward(ts, TrainConfig(select_by="mc"))
    assert [t.id for t in kept] == ["s0", "s1", "s3", "s4"]  # incorrect ones stay for contrastive objectives
    assert metrics == {"select_threshold": 0.6, "select_kept_correct": 2, "select_scored_correct": 3}
    kept, _ = select_by_reward(ts, TrainConfig(select_by="mc", select_calibrate=False, select_threshold=0.3))
    assert [t.id for t in kept if t.correct] == ["s0", "s1", "s2"]


def test_only_correct_labels_just_the_verified_samples_through_iterate(tmp_path):
    """label.only_correct: MC labels only the correct rollouts, and a fixed threshold just above 0
    keeps the correct samples whose every step has a completion that reaches the answer
    (Math-Shepherd's hard label), checked against the labels the run wrote."""
    sets = [
        *TINY_SAMPLES,
        "run.iterations=1",
        'label.labellers=["mc"]',
        "label.mc_samples=2",
        "label.mc_max_new_tokens=8",
        "label.only_correct=true",
        "train.select_by=mc",
        "train.select_calibrate=false",
        "train.select_threshold=0.01",
        "train.max_per_problem=8",
        "train.policy.max_steps=1",
    ]
    run = tmp_path / "r"
    result = CliRunner().invoke(app, ["iterate", "--run", str(run), *[x for s in sets for x in ("--set", s)]])
    assert result.exit_code == 0, result.output
    rollouts = [json.loads(line) for line in (run / "iter_0001" / "rollouts.jsonl").read_text().splitlines()]
    labels = [json.loads(line) for line in (run / "iter_0001" / "labels.jsonl").read_text().splitlines()]
    correct = {r["id"] for r in rollouts if r["correct"]}
    assert correct and len(correct) < len(rollouts)  # the check below means something
    assert {lab["trajectory_id"] for lab in labels} == correct
    manifest = json.loads((run / "manifest.json").read_text())["iterations"]["1"]
    assert manifest["label"]["metrics"]["trajectories"] == len(correct)
    hard_good = sum(min(lab["labels"]) > 0 for lab in labels)
    assert manifest["train"]["metrics"]["select_kept_correct"] == hard_good
    assert manifest["train"]["metrics"]["select_scored_correct"] == len(correct)
    for extra, needle in (
        (["train.select_calibrate=true"], "no incorrect rollout to calibrate"),
        (["run.recipe=prm"], "goes with the rft recipe"),
    ):
        result = CliRunner().invoke(
            app, ["iterate", "--run", str(tmp_path / "x"), *[x for s in [*sets, *extra] for x in ("--set", s)]]
        )
        assert result.exit_code == 2 and needle in result.output, result.output


def test_selection_by_mc_rewards_through_iterate(tmp_path):
    sets = [
        *TINY_SAMPLES,
        "run.iterations=1",
        "run.iterations=1",
        'label.labellers=["mc"]',
        "label.mc_samples=2",
        "label.mc_max_new_tokens=8",
        "train.select_by=mc",
        "train.max_per_problem=8",
        "train.policy.max_steps=1",
    ]
    result = CliRunner().invoke(
        app, ["iterate", "--run", str(tmp_path / "r"), *[x for s in sets for x in ("--set", s)]]
    )
    assert result.exit_code == 0, result.output
    train = json.loads((tmp_path / "r" / "manifest.json").read_text())["iterations"]["1"]["train"]["metrics"]
    assert train["select_scored_correct"] > 0 and 0 <= train["select_kept_correct"] <= train["select_scored_correct"]
    assert train["examples"] == train["select_kept_correct"]  # rft trains on the kept correct samples
    # the label phase's pair accuracy of the MC rewards, recomputed from the rollouts it wrote
    label = json.loads((tmp_path / "r" / "manifest.json").read_text())["iterations"]["1"]["label"]["metrics"]
    rows = [json.loads(x) for x in (tmp_path / "r" / "iter_0001" / "rollouts.jsonl").read_text().splitlines()]
    for rule, agg in (("min", min), ("sum", sum)):
        scored = [(r["problem_id"], r["correct"], agg(r["step_rewards"]["mc"])) for r in rows]
        assert (label[f"mc_pair_accuracy_{rule}"], label["mc_pairs"]) == pair_accuracy(scored)
    assert label["mc_pairs"] >= 1 and label["mc_pair_accuracy_sum"] > 0.5  # not all ties on this seeded run
    # a fixed threshold above any MC score (they lie in [0, 1]) keeps no correct sample
    fixed = [*sets, "train.select_calibrate=false", "train.select_threshold=2.0"]
    result = CliRunner().invoke(
        app, ["iterate", "--run", str(tmp_path / "f"), *[x for s in fixed for x in ("--set", s)]]
    )
    assert result.exit_code == 0, result.output
    train = json.loads((tmp_path / "f" / "manifest.json").read_text())["iterations"]["1"]["train"]["metrics"]
    assert train["select_threshold"] == 2.0 and train["select_kept_correct"] == 0 == train["examples"]


def test_reward_band_trains_the_prm_on_the_prompts_with_both_outcomes_through_iterate(tmp_path):
    """`train.reward_band` keeps the samples of prompts whose share of correct samples lies in
    it; the default [0, 1] keeps every sample."""
    sets = [
        *TINY_SAMPLES,
        "run.iterations=1",
        "run.recipe=prm",
        'label.labellers=["implicit"]',
        "train.policy.max_steps=1",
        "train.reward.micro_batch_size=1",
        "train.reward.batch_size=2",
        "train.reward.max_steps=1",
    ]
    examples = {}
    for name, band in (("all", []), ("both", ["train.reward_band=[0.01, 0.99]"])):
        run = tmp_path / name
        result = CliRunner().invoke(
            app, ["iterate", "--run", str(run), *[x for s in [*sets, *band] for x in ("--set", s)]]
        )
        assert result.exit_code == 0, result.output
        examples[name] = json.loads((run / "manifest.json").read_text())["iterations"]["1"]["reward"]["metrics"][
            "examples"
        ]
    rollouts = [json.loads(x) for x in (tmp_path / "all" / "iter_0001" / "rollouts.jsonl").read_text().splitlines()]
    outcomes: dict[str, set] = {}
    for r in rollouts:
        outcomes.setdefault(r["problem_id"], set()).add(bool(r["correct"]))
    written = [r for r in rollouts if r["text"]]  # an empty completion is no PRM example
    mixed = [r for r in written if outcomes[r["problem_id"]] == {True, False}]
    assert examples["all"] == len(written)
    assert examples["both"] == len(mixed) and 0 < len(mixed) < len(written)
    bad = CliRunner().invoke(app, ["iterate", "--run", str(tmp_path / "x"), "--set", "train.reward_band=[0.9, 0.1]"])
    assert bad.exit_code == 2 and "train.reward_band must be [low, high]" in " ".join(bad.output.split())


@pytest.mark.slow
def test_pair_kinds_same_keeps_only_sibling_steps_that_both_end_or_both_continue_through_iterate(tmp_path):
    """search.pair_kinds = "same": the same trees (the search does not read the key), and of
    their visited sibling pairs only those whose two steps both end the solution or both go on
    become DPO pairs; "any" (the default) pairs them all (pair_margin 0 here)."""
    counts = {}
    for kinds in ("any", "same"):
        run = tmp_path / kinds
        keys = [*DPO_MCTS, f"search.pair_kinds={kinds}", "train.policy.max_steps=1"]
        result = CliRunner().invoke(app, ["iterate", "--run", str(run), *[x for s in keys for x in ("--set", s)]])
        assert result.exit_code == 0, result.output
        trees = [json.loads(x) for x in (run / "iter_0001" / "trees.jsonl").read_text().splitlines()]
        kids = [[n for n in t["nodes"] if n["parent"] == p["id"] and n["visits"]] for t in trees for p in t["nodes"]]
        every = [(a, b) for ks in kids for i, a in enumerate(ks) for b in ks[i + 1 :]]
        same = [(a, b) for a, b in every if a["terminal"] == b["terminal"]]
        counts[kinds] = (len((run / "iter_0001" / "pairs.jsonl").read_text().splitlines()), len(every), len(same))
    assert counts["any"][1:] == counts["same"][1:]  # the same trees
    assert counts["any"][0] == counts["any"][1] and counts["same"][0] == counts["same"][2]
    assert counts["same"][2] < counts["any"][1]  # this run has mixed pairs to drop
    bad = CliRunner().invoke(app, ["iterate", "--run", str(tmp_path / "x"), "--set", "search.pair_kinds=some"])
    assert bad.exit_code == 2 and "search.pair_kinds must be any or same" in bad.output
