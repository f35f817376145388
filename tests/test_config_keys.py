"""Config keys that change what a run does, each exercised through `reasoner iterate` and
checked against the artefacts the run wrote: reward shaping (`label.shaping`,
`label.clip_eta`), the selection rule (`train.select_rule`), Math-Shepherd's completion
temperature (`label.mc_temperature`), the implicit PRM's starting weights
(`label.reward_model`), the prompt length cap (`model.max_prompt_tokens`), StepWiser's target
rule (`label.judge_rule`, `label.judge_tau`) and reset (`search.judge_resets`), the warm-up
(`train.policy.warmup_steps`), AdamW's weight decay and gradient clipping
(`train.policy.weight_decay`, `max_grad_norm`), MCTS's exploration constant (`search.mcts_c`),
root noise (`search.mcts_dirichlet_weight`, `_alpha`) and token budget (`search.mcts_token_budget`)."""

import json
from pathlib import Path

import pytest
from tinyrun import TINY_SAMPLES, Scripted, as_sets, train_answers
from typer.testing import CliRunner

from reasoner.cli import app
from reasoner.generation import BACKENDS

MC = [
    *TINY_SAMPLES,
    "run.iterations=1",
    'label.labellers=["mc"]',
    "label.mc_samples=2",
    "label.mc_max_new_tokens=8",
    "train.max_per_problem=8",
    "train.policy.max_steps=1",
]
# Every answer right; the claims before it are all true, one false or two false, by turns. The
# `code` labeller scores them [1, 1, 1], [0, 1, 1] and [0, 0, 1] (a step without a claim: 1).
CLAIMS = ["2 + 2 = 4\n3 + 3 = 6", "2 + 2 = 5\n3 + 3 = 6", "2 + 2 = 5\n3 + 3 = 7"]
RAW = [[1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]]


def iterate(run: Path, sets: list[str]):
    return CliRunner().invoke(app, ["iterate", "--run", str(run), *as_sets(sets)])


def rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def ran(run: Path, sets: list[str]) -> tuple[list[dict], dict[str, list[float]], dict]:
    """Run one iteration; its rollouts, the raw labels by trajectory, and the manifest's
    iteration 1."""
    result = iterate(run, sets)
    assert result.exit_code == 0, result.output
    labels = {lab["trajectory_id"]: lab["labels"] for lab in rows(run / "iter_0001" / "labels.jsonl")}
    manifest = json.loads((run / "manifest.json").read_text())["iterations"]["1"]
    return rows(run / "iter_0001" / "rollouts.jsonl"), labels, manifest


@pytest.fixture
def scripted_run(tmp_path):
    """``scripted_run(name, write, sets)``: one iteration of a stand-in policy whose samples are
    ``write(answer, call)`` (``call`` counts the policy's rows); its rollouts, raw labels and
    manifest."""
    gold, calls = train_answers(), iter(range(10_000))
    writer = {}

    def script(context: str) -> str:
        return writer["write"](next((a for q, a in gold.items() if q in context), "0"), next(calls))

    BACKENDS["scripted-keys"] = lambda spec, device="cpu", settings=None: Scripted(script)
    base = [*TINY_SAMPLES, "run.iterations=1", "generate.backend=scripted-keys", "generate.max_new_tokens=60"]

    def run(name: str, write, sets: list[str]):
        writer["write"] = write
        return ran(tmp_path / name, [*base, *sets])

    yield run
    del BACKENDS["scripted-keys"]


@pytest.fixture
def claims_run(scripted_run):
    """``claims_run(name, sets)``: one iteration whose samples are CLAIMS by turns, each with the
    right answer, labelled by `code`; its rollouts (each with ``kind``, the index into CLAIMS),
    raw labels and manifest."""
    base = ['label.labellers=["code"]', "train.select_by=code", "train.max_per_problem=8", "train.policy.max_steps=1"]

    def run(name: str, sets: list[str]):
        write = lambda answer, call: f"{CLAIMS[call % 3]}\nThe answer is {answer}."  # noqa: E731
        rollouts, labels, manifest = scripted_run(name, write, [*base, *sets])
        for r in rollouts:
            r["kind"] = next(i for i, c in enumerate(CLAIMS) if r["text"].startswith(c))
        assert all(r["correct"] for r in rollouts) and {r["kind"] for r in rollouts} == {0, 1, 2}
        assert all(labels[r["id"]] == RAW[r["kind"]] for r in rollouts)
        return rollouts, labels, manifest

    return run


def test_warmup_steps_shape_the_learning_rate_each_step_logs(scripted_run, tmp_path):
    """8 examples (one right answer a problem), 2 a step: 4 steps. Linear warm-up over
    `train.policy.warmup_steps` = 2, then linear decay to 0: the rate after steps 1-4 is
    2/3, 1, 1/2 and 0 of the peak 1e-3 (metrics.jsonl logs the rate the next step uses)."""
    sets = ["train.policy.warmup_steps=2", "train.policy.learning_rate=1e-3", "train.policy.batch_size=2"]
    sets += ["train.policy.micro_batch_size=2", "train.policy.epochs=1", 'label.labellers=["code"]']
    _, _, manifest = scripted_run("warm", lambda answer, call: f"The answer is {answer}.", sets)
    assert manifest["train"]["metrics"]["examples"] == 8 and manifest["train"]["metrics"]["steps"] == 4
    logged = [r for r in rows(tmp_path / "warm" / "metrics.jsonl") if r.get("phase") == "train" and "lr" in r]
    assert [r["step"] for r in logged] == [1, 2, 3, 4]
    assert [r["lr"] for r in logged] == pytest.approx([2e-3 / 3, 1e-3, 5e-4, 0.0])


def test_clip_shaping_with_its_eta_and_the_sum_rule_select_what_they_say(claims_run):
    """Clip (Gao et al. 2024): each step reward r becomes min(r - eta, 0) in rollouts.jsonl,
    labels.jsonl keeping r. eta 0.5 makes [1, 1, 1] -> [0, 0, 0], [0, 1, 1] -> [-0.5, 0, 0] and
    [0, 0, 1] -> [-0.5, -0.5, 0]; at threshold -0.75 the sum rule keeps the first two kinds
    (sums 0, -0.5; -1.0 is dropped), the min rule all three (minima 0, -0.5, -0.5)."""
    shaped = {0: [0.0, 0.0, 0.0], 1: [-0.5, 0.0, 0.0], 2: [-0.5, -0.5, 0.0]}
    fixed = ["label.shaping=clip", "label.clip_eta=0.5", "train.select_calibrate=false", "train.select_threshold=-0.75"]
    for rule, kept_kinds in (("sum", {0, 1}), ("min", {0, 1, 2})):
        rollouts, _, manifest = claims_run(rule, [*fixed, f"train.select_rule={rule}"])
        assert all(r["step_rewards"]["code"] == shaped[r["kind"]] for r in rollouts)
        train = manifest["train"]["metrics"]
        assert train["select_scored_correct"] == len(rollouts) == 32
        kept = [r for r in rollouts if r["kind"] in kept_kinds]
        assert train["select_kept_correct"] == len(kept)
        assert train["examples"] == len({(r["problem_id"], r["text"]) for r in kept})  # RFT's one copy a text


def test_delta_shaping_telescopes_to_the_first_steps_reward(claims_run):
    """Delta: r_t - r_{t+1}, the last kept: [1, 1, 1] -> [0, 0, 1], [0, 1, 1] -> [-1, 0, 1],
    [0, 0, 1] -> [0, -1, 1]; each sums to its first step's reward."""
    shaped = {0: [0.0, 0.0, 1.0], 1: [-1.0, 0.0, 1.0], 2: [0.0, -1.0, 1.0]}
    rollouts, _, _ = claims_run("delta", ["label.shaping=delta"])
    assert all(r["step_rewards"]["code"] == shaped[r["kind"]] for r in rollouts)


class Recording:
    """The `hf` backend, recording the temperature of every generate call."""

    temperatures: list[float] = []

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate(self, prompts, sampling, *args, **kwargs):
        Recording.temperatures.append(sampling.temperature)
        return self.inner.generate(prompts, sampling, *args, **kwargs)

    def generate_ids(self, prompts, sampling, *args, **kwargs):
        Recording.temperatures.append(sampling.temperature)
        return self.inner.generate_ids(prompts, sampling, *args, **kwargs)


def test_mc_temperature_is_the_temperature_of_math_shepherds_completions(tmp_path):
    hf = BACKENDS["hf"]
    BACKENDS["recording"] = lambda spec, device="cpu", settings=None: Recording(hf(spec, device, settings))
    Recording.temperatures = []
    try:
        _, labels, _ = ran(tmp_path / "r", [*MC, "generate.backend=recording", "label.mc_temperature=0.35"])
    finally:
        del BACKENDS["recording"]
    assert labels and any(len(v) > 1 for v in labels.values())  # some prefix was completed
    # the rollouts at generate.temperature, the completions at 0.35 (not the default 0.8), the
    # held-out answers greedy
    assert set(Recording.temperatures) == {1.0, 0.35, 0.0}


def test_reward_model_starts_the_implicit_prm_from_other_weights(tmp_path):
    """Iteration 1's implicit PRM is the starting policy (every reward exactly 0, phi = the
    reference) unless `label.reward_model` names other weights."""
    sets = [*MC, 'label.labellers=["implicit"]']
    _, default, _ = ran(tmp_path / "d", sets)
    _, other, _ = ran(tmp_path / "o", [*sets, "label.reward_model=tiny:7"])
    assert default and all(x == 0.0 for v in default.values() for x in v)
    assert sum(abs(x) > 1e-6 for v in other.values() for x in v) > len(other)


def test_a_prompt_over_max_prompt_tokens_is_refused_naming_the_problem(tmp_path):
    run = tmp_path / "r"
    result = iterate(run, [*MC, "model.max_prompt_tokens=16"])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "problem arith-train-" in text and "over model.max_prompt_tokens = 16" in text
    assert not (run / "iter_0001" / "rollouts.jsonl").exists()
    result = iterate(tmp_path / "ok", [*MC, "model.max_prompt_tokens=2048"])
    assert result.exit_code == 0, result.output


def test_judge_rule_and_tau_make_the_judges_training_targets(tmp_path):
    """StepWiser's rules turn MC Q values into the judge's step targets (`label.judge_rule`,
    `label.judge_tau`); the judge phase reports how many it made and the share called good,
    recomputed here from the labels and outcomes the run wrote."""
    from reasoner.rewards.judge_rules import RULES

    sets = [*MC, "run.recipe=prm", 'label.labellers=["mc", "judge"]', "label.judge_samples=2"]
    sets += ["label.judge_max_new_tokens=8", "train.reward.max_steps=1", "train.judge.max_steps=1"]
    good = {}
    for rule, tau in (("absolute", 0.0), ("difference", 0.0), ("difference", 1.0)):
        run = tmp_path / f"{rule}-{tau}"
        result = iterate(run, [*sets, f"label.judge_rule={rule}", f"label.judge_tau={tau}"])
        assert result.exit_code == 0, result.output
        rollouts = rows(run / "iter_0001" / "rollouts.jsonl")
        mc = {lab["trajectory_id"]: lab["labels"] for lab in rows(run / "iter_0001" / "labels.jsonl")
              if lab["labeller"] == "mc"}  # fmt: skip
        solved: dict[str, list[bool]] = {}
        for r in rollouts:
            solved.setdefault(r["problem_id"], []).append(r["correct"])
        targets = [t for r in rollouts for t in RULES.lookup(rule)(mc[r["id"]], sum(solved[r["problem_id"]]) / 4, tau)]
        judge = json.loads((run / "manifest.json").read_text())["iterations"]["1"]["judge"]["metrics"]
        assert judge["targets"] == len(targets) > 0
        assert judge["targets_good"] == pytest.approx(sum(targets) / len(targets))
        good[(rule, tau)] = judge["targets_good"]
    assert len(set(good.values())) == 3, good  # each rule and threshold decides differently here
    assert good[("difference", 1.0)] == 1.0  # no Q value drops by more than 1


def test_judge_resets_resample_the_steps_the_judge_calls_bad(tmp_path):
    """Beam search with `search.judge_resets`: a new step the step judge calls bad is sampled
    again (StepWiser's reset). The stand-in policy's first step of each problem is false
    ("2 + 2 = 5"), every later one true; the stand-in judge calls a false claim bad. Without a
    reset the false step leads both kept beams; with one, no solution holds it."""
    gold = train_answers()

    def script_for(seen: set):
        def script(context: str) -> str:
            if "New step:" in context:  # the step judge's prompt
                return " Verdict: BAD" if "2 + 2 = 5" in context.rpartition("New step:")[2] else " Verdict: GOOD"
            question = next((q for q in gold if q in context), "")
            first = next((s for s in ("2 + 2 = 5", "2 + 2 = 4") if s + "\n" in context), None)
            if first is None:
                first = "2 + 2 = 4" if question in seen else "2 + 2 = 5"
                seen.add(question)
            return f"{first}\nThe answer is {gold.get(question, '0')}."

        return script

    texts = {}
    for resets in (0, 1):
        script = script_for(set())
        BACKENDS["scripted-judged"] = lambda spec, device="cpu", settings=None, f=script: Scripted(f)
        sets = [*TINY_SAMPLES, "run.iterations=1", "generate.backend=scripted-judged", "generate.max_new_tokens=60"]
        sets += ["generate.searcher=beam", "search.beam_width=2", "search.beam_expansions=2", "search.beam_scorer=none"]
        sets += [f"search.judge_resets={resets}", "label.judge_samples=1", 'label.labellers=["code"]']
        sets += ["train.policy.max_steps=1"]
        try:
            result = iterate(tmp_path / str(resets), sets)
        finally:
            del BACKENDS["scripted-judged"]
        assert result.exit_code == 0, result.output
        texts[resets] = [r["text"] for r in rows(tmp_path / str(resets) / "iter_0001" / "rollouts.jsonl")]
    assert len(texts[0]) == len(texts[1]) == 16  # 8 problems x 2 beams
    assert all(t.startswith("2 + 2 = 5\n") for t in texts[0])
    assert all(t.startswith("2 + 2 = 4\n") for t in texts[1])


def mcts_trees(run: Path, simulations: int, expansions: int, max_steps: int, step_tokens: int, sets: list[str]):
    """One iteration of MCTS without a value model on 4 tiny problems; each tree's nodes."""
    base = [*TINY_SAMPLES, "run.iterations=1", "generate.searcher=mcts", f"search.mcts_simulations={simulations}"]
    base += [f"search.mcts_expansions={expansions}", f"search.max_steps={max_steps}"]
    base += [f"search.step_tokens={step_tokens}", "search.mcts_value=none", "train.policy.max_steps=1"]
    got = iterate(run, [*base, "task.train_size=4", *sets])
    assert got.exit_code == 0, got.output
    return [t["nodes"] for t in rows(run / "iter_0001" / "trees.jsonl")]


def test_dirichlet_noise_at_the_mcts_root_follows_its_weight_and_alpha(tmp_path):
    """AlphaZero's root noise: prior = (1 - w) P + w n, n ~ Dir(alpha), P the priors without
    noise (w = 0, the same sampled children). A large alpha gives n close to uniform (1/m
    each), a tiny one puts nearly all of n on one child."""
    roots = {}
    for name, w, alpha in (("plain", 0.0, 0.3), ("flat", 0.5, 1000.0), ("peaked", 0.5, 0.01)):
        noise = [f"search.mcts_dirichlet_weight={w}", f"search.mcts_dirichlet_alpha={alpha}"]
        trees = mcts_trees(tmp_path / name, 3, 3, 2, 6, noise)
        roots[name] = [[n for n in nodes if n["parent"] == 0] for nodes in trees]
    assert len(roots["plain"]) == 4
    for plain, flat, peaked in zip(roots["plain"], roots["flat"], roots["peaked"], strict=True):
        assert [n["step"] for n in plain] == [n["step"] for n in flat] == [n["step"] for n in peaked]
        p = [n["prior"] for n in plain]
        assert len(p) == 3 and sum(p) == pytest.approx(1.0)
        assert [n["prior"] for n in flat] == pytest.approx([0.5 * x + 0.5 / 3 for x in p], abs=0.03)
        assert max(n["prior"] - 0.5 * x for n, x in zip(peaked, p, strict=True)) > 0.49


def test_mcts_token_budget_stops_each_problems_search(tmp_path):
    """`search.mcts_token_budget`: a tree stops expanding once its steps hold that many tokens;
    the last expansion may pass it by at most expansions x step_tokens (2 x 4)."""
    spent = {}
    for budget in (0, 10):
        trees = mcts_trees(tmp_path / str(budget), 40, 2, 3, 4, [f"search.mcts_token_budget={budget}"])
        steps = [[n for n in nodes if n["parent"] is not None] for nodes in trees]
        spent[budget] = [sum(n["token_end"] - n["token_start"] for n in tree) for tree in steps]
    assert len(spent[10]) == 4 and all(10 <= s < 10 + 2 * 4 for s in spent[10]), spent
    assert all(s >= 10 + 2 * 4 for s in spent[0]), spent  # without the cap every tree grew past it


def _trained_weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "iter_0001" / "policy" / "model.safetensors"))


def test_weight_decay_and_max_grad_norm_act_on_the_policys_update(scripted_run, tmp_path):
    """One full fine-tuning step (`train.policy.lora_rank = 0`) of AdamW (Loshchilov and Hutter
    2019) from the tiny model's weights W0: w = W0 (1 - lr wd) - lr u, u = m / (sqrt(v) + eps),
    so the run with `train.policy.weight_decay` = 0.5 differs from the one without by exactly
    -lr 0.5 W0, whatever u is. Adam's first step is g / (|g| + eps) ~ +-1 an element, of any
    gradient's scale; `train.policy.max_grad_norm` = 1e-10 scales the gradient far below eps
    (1e-8), so no weight moves by more than lr / 100."""
    import torch

    from reasoner import models

    lr = 1e-3
    sets = ["train.policy.lora_rank=0", f"train.policy.learning_rate={lr}", "train.policy.max_steps=1"]
    sets += ["train.policy.warmup_steps=0", 'label.labellers=["code"]']
    write = lambda answer, call: f"The answer is {answer}."  # noqa: E731
    weights = {}
    runs = {
        "plain": ["train.policy.max_grad_norm=0"],
        "decay": ["train.policy.max_grad_norm=0", "train.policy.weight_decay=0.5"],
        "clipped": ["train.policy.max_grad_norm=1e-10"],
    }
    for name, extra in runs.items():
        _, _, manifest = scripted_run(name, write, [*sets, *extra])
        assert manifest["train"]["metrics"]["steps"] == 1
        weights[name] = _trained_weights(tmp_path / name)
    start = {n: p.detach() for n, p in models.tiny_model(0).named_parameters()}
    moved = clipped = 0.0
    for name, w0 in start.items():
        key = name if name in weights["plain"] else next(k for k in weights["plain"] if k.endswith(name))
        plain, decay, clip = weights["plain"][key], weights["decay"][key], weights["clipped"][key]
        torch.testing.assert_close(decay - plain, -lr * 0.5 * w0, atol=1e-7, rtol=0)
        moved = max(moved, float((plain - w0).abs().max()))
        clipped = max(clipped, float((clip - w0).abs().max()))
    assert moved > 0.5 * lr and clipped < lr / 100, (moved, clipped)
    logged = [r for r in rows(tmp_path / "clipped" / "metrics.jsonl") if r.get("phase") == "train" and "grad_norm" in r]
    assert logged and all(r["grad_norm"] > 1e-10 for r in logged)  # the norm before clipping


def test_mcts_c_weighs_exploration_against_the_values_found(tmp_path):
    """PUCT: score = Q + c P sqrt(N) / (1 + n), first child on ties. Without a value model a
    new partial step is worth 0.5, so every Q is 0.5 until a wrong answer (0) is reached. Each
    simulation expands one node into 3 children with consecutive ids, so a tree's expansion
    order is the parents of nodes 1, 4, 7, ... With `search.mcts_c` = 0 the search is greedy on
    Q: after the root it expands node 1, then node 1's first child (node 4) unless one of its
    children already ended wrong. With c = 100 the priors decide: the next three expansions are
    the root's children in falling order of prior."""
    trees = {c: mcts_trees(tmp_path / str(c), 6, 3, 4, 4, [f"search.mcts_c={c}"]) for c in (0.0, 100.0)}
    assert len(trees[0.0]) == len(trees[100.0]) == 4
    greedy_deeper = 0
    for nodes in trees[0.0]:
        order = [nodes[i]["parent"] for i in range(1, len(nodes), 3)]
        assert order[:2] == [0, 1], order
        if not any(nodes[i]["terminal"] for i in (4, 5, 6)):
            assert order[2] == 4, order
            greedy_deeper += 1
    assert greedy_deeper >= 2
    for nodes in trees[100.0]:
        order = [nodes[i]["parent"] for i in range(1, len(nodes), 3)]
        by_prior = sorted((1, 2, 3), key=lambda k: -nodes[k]["prior"])
        assert order[:4] == [0, *by_prior], (order, [nodes[k]["prior"] for k in (1, 2, 3)])
    assert any(max((1, 2, 3), key=lambda k: t[k]["prior"]) != 1 for t in trees[100.0])  # orders differ
    # the same samples under both: the priors of the root's children agree, the orders do not
    assert [[n["prior"] for n in t[1:4]] for t in trees[0.0]] == [[n["prior"] for n in t[1:4]] for t in trees[100.0]]
