"""The training phases: the policy (`train`), the implicit PRM (`reward`) and the stepwise judge
(`judge`). Each fine-tunes one model with one objective through `_fit`, which saves
`train_state/` every few steps and resumes from it; none of them generates text."""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import replace
from typing import Any

import torch

from reasoner import models, seeding
from reasoner.config import ConfigError, RoleTrainConfig
from reasoner.console import progress, say
from reasoner.ranks import LaunchError, barrier
from reasoner.records import Pair, Problem, StepLabels, Trajectory
from reasoner.rewards import get_labeller, judge_rules
from reasoner.rewards.judge import verdict
from reasoner.run import RunError
from reasoner.session import Session
from reasoner.training import selection
from reasoner.training.engine import get_engine
from reasoner.training.objectives import get_objective
from reasoner.training.objectives.data import RolloutData
from reasoner.training.objectives.implicit_prm import PRMExample
from reasoner.training.objectives.judge_rl import JudgeExample, leave_one_out
from reasoner.training.trainer import Trainer


def _logprobs(
    s: Session, k: int, phase: str, spec: str, pairs: list[tuple[list[int], list[int]]], name: str
) -> list[list[float]]:
    """``spec``'s token log-probs of each (prompt ids, completion ids), with a progress line (a
    reference pass over an iteration's pairs takes minutes on a CPU). The pass is kept in the
    phase's `train_state` folder, so a phase resumed after a kill reads it back instead of running
    it again; it goes with that folder when the phase completes (or is redone), and is used only
    for the same model and the same sequences (a file that does not read is passed over)."""
    if not pairs:
        return []
    what = f"iter {k} {phase} {name}"
    key = hashlib.sha256(json.dumps([spec, pairs]).encode()).hexdigest()
    store = s.run.state_dir(k, phase)
    kept = store.kept_rows(name.replace(" ", "_"), key)
    if kept is not None:
        say(f"{what}: read back ({len(pairs)} sequences, kept from the interrupted run)")
        return kept
    with progress(what, len(pairs)) as update:
        out = s.backend(spec).score_ids(pairs, progress=update)
    store.keep_rows(name.replace(" ", "_"), key, out)
    return out


def _fit(s: Session, k: int, phase: str, role: str, make_examples, objective) -> dict[str, Any]:
    """Train every role ``objective`` updates (``role`` alone for a one-role objective; ``role``'s
    config sets the batches and steps) from its ``ROLE@k-1`` on ``make_examples(tokenizer)``,
    saving `train_state` every few steps (and resuming from it), and export each to
    ``iter_k/ROLE``."""
    cfg = s.config
    tc: RoleTrainConfig = getattr(cfg.train, role)
    examples = make_examples(models.load_tokenizer(s.roles.spec(role, k - 1)))
    order = _epoch_order(len(examples), tc.epochs, _seed(cfg.run.seed, "order", phase, k))
    total = math.ceil(len(order) / tc.batch_size)
    if tc.max_steps:
        total = min(total, tc.max_steps)
    engines = {}
    for r in getattr(objective, "roles", (role,)):
        # a fresh copy of the weights: the engine changes them in place
        seed = _seed(cfg.run.seed, "init", phase, k) if r == role else seeding.derive(cfg.run.seed, "init", phase, r, k)
        rc: RoleTrainConfig = getattr(cfg.train, r)
        engines[r] = get_engine(rc.engine)(s.roles.spec(r, k - 1), rc, max(total, 1), cfg.run.device, seed=seed)
    for r, engine in engines.items():
        if getattr(engine, "world", 1) != s.run.ranks.world:
            raise LaunchError(
                f"train.{r}.engine = {getattr(cfg.train, r).engine!r} trains in one process, but this job has"
                f" {s.run.ranks.world}; under a launcher use engine = 'deepspeed'"
            )
    trainer = Trainer(engines, objective)
    store = s.run.state_dir(k, phase)
    latest = store.latest()
    if latest is not None:
        trainer.load_state(latest)
        say(f"iter {k} {phase}: resuming from step {trainer.step} ({latest.name})")
    s.run.begin_phase(k, phase, keep_steps_upto=trainer.step)
    last: dict[str, float] = {}
    with progress(f"iter {k} {phase}", total, start=trainer.step) as update:
        update(trainer.step)
        while trainer.step < total:
            step = trainer.step
            batch = [examples[i] for i in order[step * tc.batch_size : (step + 1) * tc.batch_size]]
            last = trainer.train_step(batch)
            s.run.log({"iteration": k, "phase": phase, "step": trainer.step, **last})
            if trainer.step % tc.save_every == 0 and trainer.step < total:
                with store.save(trainer.step) as folder:
                    trainer.save_state(folder)
            update(trainer.step)
    for r, engine in engines.items():
        with s.run.checkpoint_dir(k, r) as folder:
            engine.export(folder, engine.tokenizer)
    store.clear()
    return {"examples": len(examples), "steps": total, "final_loss": last.get("loss")}


def _seed(run_seed: int, use: str, phase: str, k: int) -> int:
    # The policy's seeds keep the form they had before the reward and judge phases existed, so
    # runs made then (bench/iterate's figures among them) resume and reproduce unchanged.
    return seeding.derive(run_seed, use, k) if phase == "train" else seeding.derive(run_seed, use, phase, k)


def _epoch_order(n: int, epochs: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    order: list[int] = []
    for _ in range(epochs):
        idx = list(range(n))
        rng.shuffle(idx)
        order.extend(idx)
    return order


# ---------------------------------------------------------------------------------- policy
def train(s: Session, k: int) -> tuple[list[str], dict[str, Any]]:
    """Fine-tune the policy on its verified samples with `train.policy.objective`, after dropping
    those `train.filter_labeller` scores below its threshold."""
    cfg = s.config
    trajectories = s.run.read_records(k, "rollouts.jsonl", Trajectory)
    if any(t.correct is None for t in trajectories):
        raise RunError(f"{s.run.artefact(k, 'rollouts.jsonl')}: not verified; run `reasoner verify` first")
    filtered = _filter(s, k, trajectories, cfg.train.filter_labeller) if cfg.train.filter_labeller else trajectories
    filtered = training_view(filtered, oracle=cfg.verify.require_steps)
    picked: dict[str, Any] = {}
    if cfg.train.select_by:
        plan = s.plan(k)  # B-STaR's threshold for this labeller, when a balance phase chose one
        fixed = plan.get("threshold") if plan.get("reward") == cfg.train.select_by else None
        filtered, picked = select_by_reward(filtered, cfg.train, fixed)
    extra = {"nll": cfg.train.dpo_nll} if cfg.train.dpo_nll else {}  # dpo, mutual (checked with the config)
    objective = get_objective(cfg.train.policy.objective, beta=cfg.train.beta, **extra)
    options: dict[str, Any] = {
        "pairs": tuple(cfg.train.pairs),
        "spark_ratio": cfg.train.spark_ratio,
        "spark_tasks": tuple(cfg.train.spark_tasks),
    }
    if getattr(objective, "needs_problems", False):  # SPARK's tasks restate the questions
        options["problems"] = {p.id: p for p in s.run.read_records(k, "problems.jsonl", Problem)}
    if getattr(objective, "rankings", ()):
        options.update(reward_rankings(s, k, filtered, objective.rankings))
    pairs_path = s.run.artefact(k, "pairs.jsonl")
    pairs = s.run.read_records(k, "pairs.jsonl", Pair) if pairs_path.exists() else []

    def make(tok):
        return objective.from_rollouts(
            RolloutData(
                filtered,
                tok,
                seed=seeding.derive(cfg.run.seed, "select", k),
                max_per_problem=cfg.train.max_per_problem,
                require_steps=cfg.verify.require_steps,
                pairs=pairs,
                step_separator=s.pack.step_separator,
                # the model this iteration starts from; loaded only by objectives that ask
                reference=lambda ids: _logprobs(s, k, "train", s.policy_spec(k), ids, "reference"),
                options=options,
            )
        )

    metrics = _fit(s, k, "train", "policy", make, objective)
    metrics.update(picked)
    if cfg.train.filter_labeller:
        metrics["filtered_out"] = len(trajectories) - len(filtered)
    return [s.run.rel(s.run.artefact(k, "policy"))], metrics


def reward_rankings(
    s: Session, k: int, trajectories: list[Trajectory], which: tuple[str, ...] = ("current", "previous")
) -> dict[str, dict[str, float]]:
    """Scores of each sample by the current reward (the label phase's labels from labeller
    `train.rank_by`, by ``reward@k-1`` / ``judge@k-1``) and by the previous one (the same labeller
    run again with the models of iteration k-1: ``reward@k-2``), each aggregated by
    `train.rank_rule`, for objectives that rank samples by a reward (``which``: CREAM asks for both
    rankings, Mutual-Taught's E-step for the current one)."""
    cfg = s.config
    name = cfg.train.rank_by
    if name not in cfg.label.labellers:
        raise ConfigError(f"train.policy.objective {cfg.train.policy.objective!r} ranks samples by a reward: "
                          f"train.rank_by ({name!r}) must be a labeller that label.labellers runs")  # fmt: skip
    rule = selection.RULES.lookup(cfg.train.rank_rule)
    current = {
        lab.trajectory_id: rule(lab.labels)
        for lab in s.run.read_records(k, "labels.jsonl", StepLabels)
        if lab.labeller == name
    }
    if "previous" not in which:
        return {"current": current}
    scored = [t for t in trajectories if t.id in current]
    problems = {p.id: p for p in s.run.read_records(k, "problems.jsonl", Problem)}
    before = s.label_context(k - 1, problems)  # the models iteration k-1 was labelled with
    previous = {lab.trajectory_id: rule(lab.labels) for lab in get_labeller(name).label(scored, before)}
    return {"current": current, "previous": previous}


def training_view(trajectories: list[Trajectory], oracle: bool) -> list[Trajectory]:
    """What a policy objective may see of the rollouts. The pack's gold step labels are an
    evaluation tool (real data sets have none): they reach training only when the config names
    the oracle (`verify.require_steps`), the upper-bound baseline."""
    if oracle:
        return trajectories
    return [replace(t, meta={k: v for k, v in t.meta.items() if k != "gold_steps"}) for t in trajectories]


def select_by_reward(
    trajectories: list[Trajectory], tc, fixed: float | None = None
) -> tuple[list[Trajectory], dict[str, Any]]:
    """Keep the incorrect samples (objectives that contrast need them) and the correct ones whose
    aggregated process reward clears the threshold, calibrated on these rollouts' outcomes unless
    fixed (``fixed``: B-STaR's choice; else `train.select_threshold` when calibration is off); a
    sample the labeller did not score is dropped. Returns the kept ones and metrics."""
    name, rule = tc.select_by, selection.RULES.lookup(tc.select_rule)
    scored = [(t, rule(t.step_rewards[name])) for t in trajectories if name in t.step_rewards]
    outcomes = [bool(t.correct) for t, _ in scored]
    threshold = selection.calibrate([v for _, v in scored], outcomes) if tc.select_calibrate else tc.select_threshold
    threshold = fixed if fixed is not None else threshold
    kept = [t for t, v in scored if not t.correct or v >= threshold]
    correct = sum(bool(t.correct) for t, _ in scored)
    return kept, {
        "select_threshold": threshold,
        "select_kept_correct": sum(bool(t.correct) for t in kept),
        "select_scored_correct": correct,
    }


def _filter(s: Session, k: int, trajectories: list[Trajectory], name: str) -> list[Trajectory]:
    """Drop trajectories with a step that labeller ``name`` scores below its threshold (e.g. a
    step the StepWiser judge calls bad); trajectories it did not label are kept."""
    if name not in s.config.label.labellers:
        raise ConfigError(f"train.filter_labeller is {name!r} but label.labellers does not run it")
    threshold = get_labeller(name).threshold
    scores = {
        lab.trajectory_id: lab.labels
        for lab in s.run.read_records(k, "labels.jsonl", StepLabels)
        if lab.labeller == name
    }
    return [t for t in trajectories if all(v >= threshold for v in scores.get(t.id, []))]


# ------------------------------------------------------------------------------ reward model
def _labelled(s: Session, k: int) -> tuple[list[Trajectory], dict[str, dict[str, StepLabels]]]:
    trajectories = s.run.read_records(k, "rollouts.jsonl", Trajectory)
    labels: dict[str, dict[str, StepLabels]] = {}
    for lab in s.run.read_records(k, "labels.jsonl", StepLabels):
        labels.setdefault(lab.trajectory_id, {})[lab.labeller] = lab
    return trajectories, labels


def accuracy_band(trajectories: list[Trajectory], band: list[float]) -> dict[str, list[Trajectory]]:
    """Each prompt's samples, in prompt order, for the prompts whose share of correct samples lies
    in ``band`` = [low, high] (PRIME's accuracy filter, arXiv 2502.01456)."""
    groups: dict[str, list[Trajectory]] = {}
    for t in trajectories:
        groups.setdefault(t.problem_id, []).append(t)
    low, high = band
    return {pid: g for pid, g in sorted(groups.items()) if low <= sum(bool(t.correct) for t in g) / len(g) <= high}


def _labeller_of(s: Session, role: str):
    """The configured labeller that scores with ``role``'s model (its labels say which
    trajectories that model saw), or None."""
    found = [lab for lab in map(get_labeller, s.config.label.labellers) if lab.role == role]
    return found[0] if found else None


def reward(s: Session, k: int) -> tuple[list[str], dict[str, Any]]:
    """Update the implicit PRM with cross-entropy on the outcome labels of the rollouts its
    labeller scored (skipped when no configured labeller scores with the reward model)."""
    cfg = s.config
    labeller = _labeller_of(s, "reward")
    if labeller is None:
        return [], {"skipped": True}
    trajectories, labels = _labelled(s, k)
    chosen = [t for t in trajectories if labeller.name in labels.get(t.id, {})]
    kept = {t.id for g in accuracy_band(chosen, cfg.train.reward_band).values() for t in g}
    chosen = [t for t in chosen if t.id in kept]

    def make(tok):
        pairs = [
            (tok(t.prompt, add_special_tokens=False)["input_ids"], tok(t.text, add_special_tokens=False)["input_ids"])
            for t in chosen
        ]
        ref_lp = _logprobs(s, k, "reward", s.roles.spec("reference", k), pairs, "reference")
        return [
            PRMExample(p, c, lp, 1.0 if t.correct else 0.0)
            for (p, c), lp, t in zip(pairs, ref_lp, chosen, strict=True)
            if c
        ]

    objective = get_objective(cfg.train.reward.objective, beta=cfg.label.implicit_beta)
    metrics = _fit(s, k, "reward", "reward", make, objective)
    return [s.run.rel(s.run.artefact(k, "reward"))], metrics


# ---------------------------------------------------------------------------------- judge
def judge(s: Session, k: int) -> tuple[list[str], dict[str, Any]]:
    """RL for the stepwise judge: its sampled judgments are rewarded for matching the targets of
    the labeller it learns from (Monte-Carlo Q values; skipped unless both are configured)."""
    cfg = s.config
    judge_labeller = _labeller_of(s, "judge")
    if judge_labeller is None or judge_labeller.targets_from not in cfg.label.labellers:
        return [], {"skipped": True}
    name, source = judge_labeller.name, judge_labeller.targets_from
    trajectories, labels = _labelled(s, k)
    solved: dict[str, list[bool]] = {}
    for t in trajectories:
        solved.setdefault(t.problem_id, []).append(bool(t.correct))
    rule = judge_rules.RULES.lookup(cfg.label.judge_rule)
    groups = []  # (prompt, judgments, target)
    for t in trajectories:
        got = labels.get(t.id, {})
        if name not in got or source not in got:
            continue
        q0 = sum(solved[t.problem_id]) / len(solved[t.problem_id])
        targets = rule(got[source].labels, q0, cfg.label.judge_tau)
        meta = got[name].meta
        for prompt, judgments, target in zip(meta["prompts"], meta["judgments"], targets, strict=True):
            groups.append((prompt, judgments, 1.0 if target else 0.0))

    def make(tok):
        out = []
        for prompt, judgments, target in groups:
            if len(judgments) < 2:
                continue
            rewards = torch.tensor([[1.0 if verdict(j) == target else 0.0 for j in judgments]])
            adv = leave_one_out(rewards)[0].tolist()
            p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
            for text, a in zip(judgments, adv, strict=True):
                j_ids = tok(text + (tok.eos_token or ""), add_special_tokens=False)["input_ids"]
                if a != 0.0 and j_ids:
                    out.append(JudgeExample(p_ids, j_ids, a))
        return out

    metrics = _fit(s, k, "judge", "judge", make, get_objective(cfg.train.judge.objective))
    # how many step targets `label.judge_rule` made, and the share it calls good
    metrics |= {"targets": len(groups), "targets_good": sum(g[2] for g in groups) / len(groups) if groups else 0.0}
    return [s.run.rel(s.run.artefact(k, "judge"))], metrics


# ---------------------------------------------------------------------------------- PRIME
def prime(s: Session, k: int) -> tuple[list[str], dict[str, Any]]:
    """PRIME RL: the policy and the implicit PRM trained together from the iteration's K samples
    per prompt (objective `prime`), on the prompts whose accuracy lies in `train.prime_band`."""
    cfg = s.config
    trajectories = s.run.read_records(k, "rollouts.jsonl", Trajectory)
    if any(t.correct is None for t in trajectories):
        raise RunError(f"{s.run.artefact(k, 'rollouts.jsonl')}: not verified; run `reasoner verify` first")
    trajectories = training_view(trajectories, oracle=cfg.verify.require_steps)
    kept = {pid: g for pid, g in accuracy_band(trajectories, cfg.train.prime_band).items() if len(g) >= 2}
    objective = get_objective("prime", beta=cfg.label.implicit_beta, clip=cfg.train.ppo_clip)

    def make(tok):
        from reasoner.training.objectives.prime import Group

        eos = tok.eos_token or ""
        encoded = []
        for g in kept.values():
            prompt = tok(g[0].prompt, add_special_tokens=False)["input_ids"]
            completions = [tok(t.text + eos, add_special_tokens=False)["input_ids"] for t in g]
            encoded.append((prompt, completions, [1.0 if t.correct else 0.0 for t in g]))
        pairs = [(p, c) for p, cs, _ in encoded for c in cs]
        ref = _logprobs(s, k, "prime", s.roles.spec("reference", k), pairs, "reference")
        old = _logprobs(s, k, "prime", s.policy_spec(k), pairs, "old policy")
        out, i = [], 0
        for p, cs, outcomes in encoded:
            out.append(Group(p, cs, outcomes, ref[i : i + len(cs)], old[i : i + len(cs)]))
            i += len(cs)
        return out

    metrics = _fit(s, k, "prime", "policy", make, objective)
    metrics.update(prompts_total=len({t.problem_id for t in trajectories}), prompts_in_band=len(kept))
    return [s.run.rel(s.run.artefact(k, "policy")), s.run.rel(s.run.artefact(k, "reward"))], metrics


# ------------------------------------------------------------------------- Mutual-Taught M-step
def mstep(s: Session, k: int) -> tuple[list[str], dict[str, Any]]:
    """Mutual-Taught's M-step: sample ``policy@k`` (after the E-step) `train.after_samples` times
    on the iteration's problems (after.jsonl, written before training so that a resumed phase
    reuses it), verify, and update the implicit PRM from ``reward@k-1`` on before/after pairs and
    the verifier's outcome labels (objective `mutual_rm`)."""
    from reasoner.phases import check_answers
    from reasoner.training.objectives.implicit_prm import PRMExample
    from reasoner.training.objectives.mutual import RMPair, before_after_pairs

    cfg = s.config
    oracle = cfg.verify.require_steps
    problems = {p.id: p for p in s.run.read_records(k, "problems.jsonl", Problem)}
    before = training_view(s.run.read_records(k, "rollouts.jsonl", Trajectory), oracle)
    if any(t.correct is None for t in before):
        raise RunError(f"{s.run.artefact(k, 'rollouts.jsonl')}: not verified; run `reasoner verify` first")
    if not s.run.artefact(k, "after.jsonl").exists() and s.run.ranks.main:
        # under a launcher rank 0 samples (the others wait at the barrier), then all read them
        after = _after_samples(s, k, before)
        check_answers(s, problems, after)
        s.run.write_records(k, "after.jsonl", after)
    barrier()
    after = s.run.read_records(k, "after.jsonl", Trajectory)
    after = training_view(after, oracle)
    pairs = before_after_pairs(before, after)
    labelled = [t for t in before + after if t.correct is not None and t.text.strip()]

    def make(tok):
        def ids(text: str) -> list[int]:
            return tok(text, add_special_tokens=False)["input_ids"]

        seqs = [(ids(t.prompt), ids(t.text)) for t in labelled]
        pair_ids = [(ids(g.prompt), ids(g.text), ids(b.text)) for g, b in pairs]
        asked = seqs + [(p, c) for p, c, _ in pair_ids] + [(p, r) for p, _, r in pair_ids]
        scores = _logprobs(s, k, "mstep", s.roles.spec("reference", k), asked, "reference")
        n, m = len(seqs), len(pair_ids)
        out: list = [
            PRMExample(p, c, scores[i], 1.0 if t.correct else 0.0)
            for i, ((p, c), t) in enumerate(zip(seqs, labelled, strict=True))
            if c
        ]
        out += [RMPair(p, c, r, scores[n + j], scores[n + m + j]) for j, (p, c, r) in enumerate(pair_ids) if c and r]
        return out

    metrics = _fit(s, k, "mstep", "reward", make, get_objective("mutual_rm", beta=cfg.label.implicit_beta))
    metrics.update(
        pairs=len(pairs),
        after_preferred=sum(g.source == "after" for g, _ in pairs),
        after_accuracy=sum(bool(t.correct) for t in after) / max(len(after), 1),
        before_accuracy=sum(bool(t.correct) for t in before) / max(len(before), 1),
    )
    return [s.run.rel(s.run.artefact(k, "after.jsonl")), s.run.rel(s.run.artefact(k, "reward"))], metrics


def _after_samples(s: Session, k: int, before: list[Trajectory]) -> list[Trajectory]:
    from reasoner.generation import Sampling

    cfg = s.config
    n = cfg.train.after_samples
    prompts: dict[str, str] = {}
    for t in sorted(before, key=lambda t: t.id):
        prompts.setdefault(t.problem_id, t.prompt)
    order = sorted(prompts)
    sampling = Sampling(
        temperature=s.plan(k).get("temperature", cfg.generate.temperature),
        top_p=cfg.generate.top_p,
        max_new_tokens=cfg.generate.max_new_tokens,
        batch_size=cfg.generate.batch_size,
        seed=seeding.derive(cfg.run.seed, "mstep", k),
    )
    asked = [prompts[pid] for pid in order for _ in range(n)]
    with progress(f"iter {k} mstep sample", len(asked)) as update:
        outs = s.backend(s.policy_after(k)).generate(asked, sampling, progress=update)
    return [
        Trajectory(
            id=f"{order[i // n]}/after{i % n}",
            problem_id=order[i // n],
            prompt=asked[i],
            steps=s.pack.split_steps(o.text),
            text=o.text,
            source="after",
            num_tokens=len(o.token_ids),
        )
        for i, o in enumerate(outs)
    ]
