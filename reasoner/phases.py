"""The phases of one iteration. Each reads the previous phase's files from the run directory
and writes its own; each returns ``(artefacts, metrics)`` for the manifest. The order lives in
`reasoner.loop`, the files in `reasoner.run`."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from reasoner import evaluate as scores
from reasoner import models, seeding
from reasoner.config import Config
from reasoner.console import progress, say
from reasoner.generation import Sampling, get_backend
from reasoner.records import Problem, Trajectory
from reasoner.run import RunDir
from reasoner.search import SearchSettings, get_searcher
from reasoner.tasks import get_pack, render
from reasoner.training.engine import get_engine
from reasoner.training.objectives import get_objective
from reasoner.training.objectives.rft import select
from reasoner.verifiers import get_extractor, get_verifier


@dataclass
class Session:
    """What the phases of one run share: config, run folder, pack and the loaded models."""

    run: RunDir
    config: Config
    _models: dict[str, models.LoadedModel] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = self.config.task
        self.pack = get_pack(t.pack, source=t.source, prompt=t.prompt, difficulty=t.difficulty)
        if self.config.run.threads:
            torch.set_num_threads(self.config.run.threads)

    def policy_spec(self, iteration: int) -> str:
        """The policy that iteration ``iteration`` starts from (iteration 0: the configured one)."""
        if iteration <= 1:
            return self.config.model.policy if iteration == 1 else self.policy_after(0)
        return str(self.run.artefact(iteration - 1, "policy"))

    def policy_after(self, iteration: int) -> str:
        return self.config.model.policy if iteration == 0 else str(self.run.artefact(iteration, "policy"))

    def model(self, spec: str) -> models.LoadedModel:
        if spec not in self._models:
            self._models.clear()  # one policy in memory at a time
            self._models[spec] = models.load(spec, self.config.run.device)
        return self._models[spec]

    def backend(self, spec: str):
        loaded = self.model(spec)
        return get_backend(self.config.generate.backend)(loaded.model, loaded.tokenizer, self.config.run.device)


# ------------------------------------------------------------------------------- generate
def generate(s: Session, k: int) -> tuple[list[str], dict[str, Any]]:
    cfg = s.config
    problems = s.pack.problems("train", cfg.task.train_size, seeding.derive(cfg.run.seed, "train", k))
    problems_rel = s.run.write_records(k, "problems.jsonl", problems)
    spec = s.policy_spec(k)
    loaded = s.model(spec)
    backend = s.backend(spec)
    searcher = get_searcher(cfg.generate.searcher)
    chunks = s.run.chunks(k, "rollouts")
    size = cfg.generate.chunk_size
    n_chunks = math.ceil(len(problems) / size)
    trajectories: list[Trajectory] = []
    per_sample = cfg.generate.samples
    with progress(f"iter {k} generate", len(problems) * per_sample) as update:
        for c in range(n_chunks):
            if not chunks.has(c):
                settings = SearchSettings(
                    samples=per_sample,
                    temperature=cfg.generate.temperature,
                    top_p=cfg.generate.top_p,
                    max_new_tokens=cfg.generate.max_new_tokens,
                    batch_size=cfg.generate.batch_size,
                    seed=seeding.derive(cfg.run.seed, "generate", k, c),
                )
                done = c * size * per_sample
                part = searcher(
                    problems[c * size : (c + 1) * size],
                    backend,
                    s.pack,
                    loaded.tokenizer,
                    settings,
                    progress=lambda n, done=done: update(done + n),
                )
                chunks.write(c, part)
            trajectories.extend(chunks.read(c, Trajectory))
            update(min((c + 1) * size, len(problems)) * per_sample)
    rel = s.run.write_records(k, "rollouts.jsonl", trajectories)
    chunks.clear()
    tokens = sum(t.num_tokens for t in trajectories)
    return [problems_rel, rel], {"trajectories": len(trajectories), "tokens": tokens}


# --------------------------------------------------------------------------------- verify
def judge(s: Session, problems: dict[str, Problem], trajectories: list[Trajectory]) -> None:
    """Fill answer, correct, outcome_reward and the pack's gold step labels in place."""
    extract = get_extractor(s.config.verify.extractor)
    verify = get_verifier(s.pack.verifier)
    for t in trajectories:
        problem = problems[t.problem_id]
        t.answer = extract(t.text)
        verdict = verify(problem.answer, t.answer)
        t.correct = verdict.correct
        t.outcome_reward = 1.0 if verdict.correct else 0.0
        t.meta["verdict"], t.meta["reason"] = verdict.status, verdict.reason
        gold = s.pack.check_steps(problem, t.steps)
        if gold is not None:
            t.meta["gold_steps"] = gold


def verify(s: Session, k: int) -> tuple[list[str], dict[str, Any]]:
    problems = {p.id: p for p in s.run.read_records(k, "problems.jsonl", Problem)}
    trajectories = s.run.read_records(k, "rollouts.jsonl", Trajectory)
    judge(s, problems, trajectories)
    rel = s.run.write_records(k, "rollouts.jsonl", trajectories)
    n = max(len(trajectories), 1)
    correct = sum(bool(t.correct) for t in trajectories)
    steps_ok = sum(bool(t.correct) and False not in t.meta.get("gold_steps", []) for t in trajectories)
    solved = {t.problem_id for t in trajectories if t.correct}
    return [rel], {
        "accuracy": correct / n,
        "correct_with_valid_steps": steps_ok / n,
        "problems_solved": len(solved) / max(len(problems), 1),
    }


# ---------------------------------------------------------------------------------- train
def train(s: Session, k: int) -> tuple[list[str], dict[str, Any]]:
    cfg, tc = s.config, s.config.train
    trajectories = s.run.read_records(k, "rollouts.jsonl", Trajectory)
    if any(t.correct is None for t in trajectories):
        raise ValueError(f"{s.run.artefact(k, 'rollouts.jsonl')}: not verified; run `reasoner verify` first")
    kept = select(
        trajectories,
        require_steps=cfg.verify.require_steps,
        max_per_problem=tc.max_per_problem,
        seed=seeding.derive(cfg.run.seed, "select", k),
    )
    # A fresh copy of the starting policy: the engine changes its weights in place.
    loaded = models.load(s.policy_spec(k), cfg.run.device)
    objective = get_objective(tc.objective)
    examples = objective.examples(kept, loaded.tokenizer, loaded.tokenizer.eos_token or "")
    order = _epoch_order(len(examples), tc.epochs, seeding.derive(cfg.run.seed, "order", k))
    total = math.ceil(len(order) / tc.batch_size)
    if tc.max_steps:
        total = min(total, tc.max_steps)
    engine = get_engine(tc.engine)(
        loaded.model,
        tc,
        max(total, 1),
        cfg.run.device,
        loaded.tokenizer.pad_token_id or 0,
        seed=seeding.derive(cfg.run.seed, "init", k),
    )
    store = s.run.state_dir(k)
    latest = store.latest()
    if latest is not None:
        engine.load_state(latest)
        say(f"iter {k} train: resuming from step {engine.step} ({latest.name})")
    s.run.begin_phase(k, "train", keep_steps_upto=engine.step)
    torch.manual_seed(seeding.derive(cfg.run.seed, "train", k, engine.step))
    last: dict[str, float] = {}
    with progress(f"iter {k} train", total) as update:
        update(engine.step)
        while engine.step < total:
            batch = [examples[i] for i in order[engine.step * tc.batch_size : (engine.step + 1) * tc.batch_size]]
            last = engine.train_step(batch, objective)
            s.run.log({"iteration": k, "phase": "train", "step": engine.step, **last})
            if engine.step % tc.save_every == 0 and engine.step < total:
                with store.save(engine.step) as folder:
                    engine.save_state(folder)
            update(engine.step)
    with s.run.checkpoint_dir(k, "policy") as folder:
        engine.export(folder, loaded.tokenizer)
    store.clear()
    return [s.run.rel(s.run.artefact(k, "policy"))], {
        "examples": len(examples),
        "steps": total,
        "final_loss": last.get("loss"),
    }


def _epoch_order(n: int, epochs: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    order: list[int] = []
    for _ in range(epochs):
        idx = list(range(n))
        rng.shuffle(idx)
        order.extend(idx)
    return order


# ------------------------------------------------------------------------------- evaluate
def evaluate(s: Session, k: int) -> tuple[list[str], dict[str, Any]]:
    """Greedy pass@1 and, with ``evaluate.k`` samples, maj@k and pass@k on the test split."""
    cfg, ec = s.config, s.config.evaluate
    problems = s.pack.problems("test", cfg.task.test_size, 0)
    spec = s.policy_after(k)
    loaded = s.model(spec)
    backend = s.backend(spec)
    prompts = [render(s.pack.messages(p), loaded.tokenizer) for p in problems]
    greedy = Sampling(temperature=0.0, max_new_tokens=ec.max_new_tokens, batch_size=cfg.generate.batch_size)
    with progress(f"iter {k} evaluate", len(problems) * (1 + ec.k)) as update:
        outs = backend.generate(prompts, greedy, progress=update)
        sampled = []
        if ec.k:
            sampling = Sampling(
                temperature=ec.temperature,
                max_new_tokens=ec.max_new_tokens,
                batch_size=cfg.generate.batch_size,
                seed=seeding.derive(cfg.run.seed, "eval", k),
            )
            sampled = backend.generate(
                [p for p in prompts for _ in range(ec.k)],
                sampling,
                progress=lambda n: update(len(problems) + n),
            )
    trajs = [
        Trajectory(
            id=f"{p.id}/greedy",
            problem_id=p.id,
            prompt=pr,
            steps=s.pack.split_steps(o.text),
            text=o.text,
            source="greedy",
            num_tokens=len(o.token_ids),
        )
        for p, pr, o in zip(problems, prompts, outs, strict=True)
    ]
    samples = [
        Trajectory(
            id=f"{problems[i // ec.k].id}/e{i % ec.k}",
            problem_id=problems[i // ec.k].id,
            prompt="",
            steps=s.pack.split_steps(o.text),
            text=o.text,
            source="sample",
        )
        for i, o in enumerate(sampled)
    ]
    by_id = {p.id: p for p in problems}
    judge(s, by_id, trajs + samples)
    report = summarise(problems, trajs, samples, ec.k)
    policy = s.run.rel(Path(spec)) if k > 0 else spec  # run-relative: runs can be moved
    report.update(iteration=k, policy=policy, test_size=len(problems))
    rels = [s.run.write_json(k, "eval.json", report), s.run.write_records(k, "eval_samples.jsonl", trajs)]
    return rels, {
        key: report[key] for key in ("pass@1", "pass@1_stderr", f"maj@{ec.k}", f"pass@{ec.k}") if key in report
    }


def summarise(problems: list[Problem], greedy: list[Trajectory], samples: list[Trajectory], k: int) -> dict:
    correct = [1.0 if t.correct else 0.0 for t in greedy]
    p1, se = scores.mean_stderr(correct)
    report: dict[str, Any] = {"pass@1": p1, "pass@1_stderr": se}
    report["answer_found"] = sum(t.answer is not None for t in greedy) / max(len(greedy), 1)
    steps = [t.meta.get("gold_steps") for t in greedy]
    if any(g is not None for g in steps):
        valid = [1.0 if t.correct and False not in (g or []) else 0.0 for t, g in zip(greedy, steps, strict=True)]
        report["correct_with_valid_steps"] = sum(valid) / len(valid)
    levels = [str(p.meta.get("level", "all")) for p in problems]
    report["by_level"] = scores.by_group(levels, correct)
    if k:
        groups: dict[str, list[Trajectory]] = {}
        for t in samples:
            groups.setdefault(t.problem_id, []).append(t)
        maj = [
            scores.majority([t.answer for t in groups[p.id]], [bool(t.correct) for t in groups[p.id]]) for p in problems
        ]
        pk = [scores.pass_at_k(len(groups[p.id]), sum(bool(t.correct) for t in groups[p.id]), k) for p in problems]
        report[f"maj@{k}"] = sum(maj) / len(maj)
        report[f"pass@{k}"] = sum(pk) / len(pk)
    return report


PHASES = {"generate": generate, "verify": verify, "train": train, "evaluate": evaluate}
