"""The training phases: the policy (`train`), the implicit PRM (`reward`) and the stepwise judge
(`judge`). Each fine-tunes one model with one objective through `_fit`, which saves
`train_state/` every few steps and resumes from it; none of them generates text."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import Any

import torch

from reasoner import models, seeding
from reasoner.config import ConfigError
from reasoner.console import progress, say
from reasoner.phases import Session
from reasoner.records import StepLabels, Trajectory
from reasoner.rewards import get_labeller, judge_rules
from reasoner.rewards.judge import verdict
from reasoner.run import RunError
from reasoner.training.engine import get_engine
from reasoner.training.objectives import get_objective
from reasoner.training.objectives.implicit_prm import PRMExample
from reasoner.training.objectives.judge_rl import JudgeExample, leave_one_out
from reasoner.training.objectives.rft import select


def _fit(s: Session, k: int, phase: str, start: str, tc, objective, make_examples, out: str) -> dict[str, Any]:
    """Fine-tune model ``start`` on ``make_examples(tokenizer)`` and export it to iter_k/``out``."""
    cfg = s.config
    loaded = models.load(start, cfg.run.device)  # a fresh copy: the engine changes weights in place
    examples = make_examples(loaded.tokenizer)
    order = _epoch_order(len(examples), tc.epochs, _seed(cfg.run.seed, "order", phase, k))
    total = math.ceil(len(order) / tc.batch_size)
    if tc.max_steps:
        total = min(total, tc.max_steps)
    engine = get_engine(tc.engine)(
        loaded.model,
        tc,
        max(total, 1),
        cfg.run.device,
        loaded.tokenizer.pad_token_id or 0,
        seed=_seed(cfg.run.seed, "init", phase, k),
    )
    store = s.run.state_dir(k, phase)
    latest = store.latest()
    if latest is not None:
        engine.load_state(latest)
        say(f"iter {k} {phase}: resuming from step {engine.step} ({latest.name})")
    s.run.begin_phase(k, phase, keep_steps_upto=engine.step)
    last: dict[str, float] = {}
    with progress(f"iter {k} {phase}", total) as update:
        update(engine.step)
        while engine.step < total:
            batch = [examples[i] for i in order[engine.step * tc.batch_size : (engine.step + 1) * tc.batch_size]]
            last = engine.train_step(batch, objective)
            s.run.log({"iteration": k, "phase": phase, "step": engine.step, **last})
            if engine.step % tc.save_every == 0 and engine.step < total:
                with store.save(engine.step) as folder:
                    engine.save_state(folder)
            update(engine.step)
    with s.run.checkpoint_dir(k, out) as folder:
        engine.export(folder, loaded.tokenizer)
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
    """Fine-tune the policy on its verified samples (objective `train.objective`)."""
    cfg, tc = s.config, s.config.train
    trajectories = s.run.read_records(k, "rollouts.jsonl", Trajectory)
    if any(t.correct is None for t in trajectories):
        raise RunError(f"{s.run.artefact(k, 'rollouts.jsonl')}: not verified; run `reasoner verify` first")
    kept = select(
        trajectories,
        require_steps=cfg.verify.require_steps,
        max_per_problem=tc.max_per_problem,
        seed=seeding.derive(cfg.run.seed, "select", k),
    )
    objective = get_objective(tc.objective)
    metrics = _fit(
        s,
        k,
        "train",
        s.policy_spec(k),
        tc,
        objective,
        lambda tok: objective.examples(kept, tok, tok.eos_token or ""),
        "policy",
    )
    return [s.run.rel(s.run.artefact(k, "policy"))], metrics


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


def reward(s: Session, k: int) -> tuple[list[str], dict[str, Any]]:
    """Update the implicit PRM with cross-entropy on the outcome labels of the labelled rollouts
    (only when `implicit` is among the labellers)."""
    cfg = s.config
    if "implicit" not in cfg.label.labellers:
        return [], {"skipped": True}
    trajectories, labels = _labelled(s, k)
    chosen = [t for t in trajectories if "implicit" in labels.get(t.id, {})]
    ref = s.backend(cfg.model.policy)

    def make(tok):
        pairs = [
            (tok(t.prompt, add_special_tokens=False)["input_ids"], tok(t.text, add_special_tokens=False)["input_ids"])
            for t in chosen
        ]
        ref_lp = ref.score_ids(pairs)
        return [
            PRMExample(p, c, lp, 1.0 if t.correct else 0.0)
            for (p, c), lp, t in zip(pairs, ref_lp, chosen, strict=True)
            if c
        ]

    tc = replace(cfg.train, lora_rank=cfg.label.reward_lora_rank, learning_rate=cfg.label.reward_learning_rate)
    objective = get_objective("implicit_prm", beta=cfg.label.implicit_beta)
    metrics = _fit(s, k, "reward", s.reward_spec(k), tc, objective, make, "reward")
    return [s.run.rel(s.run.artefact(k, "reward"))], metrics


# ---------------------------------------------------------------------------------- judge
def judge(s: Session, k: int) -> tuple[list[str], dict[str, Any]]:
    """RL for the stepwise judge: its sampled judgments are rewarded for matching the Monte-Carlo
    targets of the steps (only when both `judge` and `mc` are among the labellers)."""
    cfg = s.config
    if not {"judge", "mc"} <= set(cfg.label.labellers):
        return [], {"skipped": True}
    trajectories, labels = _labelled(s, k)
    solved: dict[str, list[bool]] = {}
    for t in trajectories:
        solved.setdefault(t.problem_id, []).append(bool(t.correct))
    rule = judge_rules.RULES[cfg.label.judge_rule]
    groups = []  # (prompt, judgments, target)
    for t in trajectories:
        got = labels.get(t.id, {})
        if "judge" not in got or "mc" not in got:
            continue
        q0 = sum(solved[t.problem_id]) / len(solved[t.problem_id])
        targets = rule(got["mc"].labels, q0, cfg.label.judge_tau)
        meta = got["judge"].meta
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

    metrics = _fit(s, k, "judge", s.judge_spec(k), cfg.train, get_objective("judge_rl"), make, "judge")
    return [s.run.rel(s.run.artefact(k, "judge"))], metrics
