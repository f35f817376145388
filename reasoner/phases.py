"""The phases of one iteration that do not train: generate, verify, label, evaluate. Each reads
the previous phase's files from the run directory and writes its own; each returns
``(artefacts, metrics)`` for the manifest. Recipes (`reasoner.recipes`) declare them and their
order, `reasoner.loop` runs them, `reasoner.run` owns the files."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import torch

from reasoner import evaluate as scores
from reasoner import seeding, tools
from reasoner.benchmark import answer_tokens
from reasoner.console import progress
from reasoner.generation import Sampling
from reasoner.records import Pair, Problem, StepLabels, Trajectory, Tree
from reasoner.rewards import get_labeller
from reasoner.rewards.shaping import SHAPERS
from reasoner.search import SearchSettings, get_searcher
from reasoner.session import Session
from reasoner.tasks import PackError, render
from reasoner.verifiers import get_extractor, get_verifier
from reasoner.verifiers.extract import answer_for


# ------------------------------------------------------------------------------- generate
def generate(s: Session, k: int) -> tuple[list[str], dict[str, Any]]:
    cfg = s.config
    problems = s.pack.problems("train", cfg.task.train_size, seeding.derive(cfg.run.seed, "train", k))
    problems_rel = s.run.write_records(k, "problems.jsonl", problems)
    by_id = {p.id: p for p in problems}
    backend = s.backend(s.policy_spec(k))
    check_prompts(s, problems, backend.tokenizer)
    searcher = get_searcher(cfg.generate.searcher)
    chunks = {name: s.run.chunks(k, name) for name in ("rollouts", "trees", "pairs")}
    size = cfg.generate.chunk_size
    n_chunks = math.ceil(len(problems) / size)
    out: dict[str, list] = {"rollouts": [], "trees": [], "pairs": []}
    types = {"rollouts": Trajectory, "trees": Tree, "pairs": Pair}
    done = sum(chunks["rollouts"].has(c) for c in range(n_chunks))  # by a killed run: no part of the ETA's rate
    with progress(f"iter {k} generate", n_chunks, start=done) as update:
        for c in range(n_chunks):
            if not chunks["rollouts"].has(c):
                seed = seeding.derive(cfg.run.seed, "generate", k, c)
                settings = s.search_settings(k, seed, training=True, problems=by_id)
                result = searcher(problems[c * size : (c + 1) * size], backend, s.pack, backend.tokenizer, settings)
                chunks["trees"].write(c, result.trees)
                chunks["pairs"].write(c, result.pairs)
                chunks["rollouts"].write(c, result.trajectories)  # written last: marks the chunk done
            for name, store in chunks.items():
                out[name].extend(store.read(c, types[name]))
            update(c + 1)
    rels = [problems_rel, s.run.write_records(k, "rollouts.jsonl", out["rollouts"])]
    if out["trees"]:  # a tree search (beam, MCTS) wrote its trees and step-level pairs
        rels += [
            s.run.write_records(k, "trees.jsonl", out["trees"]),
            s.run.write_records(k, "pairs.jsonl", out["pairs"]),
        ]
    for store in chunks.values():
        store.clear()
    tokens = sum(t.num_tokens for t in out["rollouts"])
    temperature = s.plan(k).get("temperature", cfg.generate.temperature)
    return rels, {
        "trajectories": len(out["rollouts"]),
        "tokens": tokens,
        "pairs": len(out["pairs"]),
        "temperature": temperature,
    }


def check_prompts(s: Session, problems: list[Problem], tokenizer) -> list[str]:
    """The problems' rendered prompts; one longer than `model.max_prompt_tokens` is refused,
    naming its problem (a prompt the model cannot see whole would be answered blind)."""
    limit = s.config.model.max_prompt_tokens
    prompts = [render(s.pack.messages(p), tokenizer) for p in problems]
    for p, prompt in zip(problems, prompts, strict=True):
        n = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        if n > limit:
            raise PackError(
                f"problem {p.id}: its prompt is {n} tokens, over model.max_prompt_tokens = {limit}; raise the "
                'limit (the model\'s context allows) or use task.prompt = "zeroshot"'
            )
    return prompts


# --------------------------------------------------------------------------------- verify
def check_answers(
    s: Session, problems: dict[str, Problem], trajectories: list[Trajectory], gold_steps: bool = True
) -> None:
    """Fill answer, correct, outcome_reward and (with ``gold_steps``) the pack's gold step labels
    in place."""
    extract = get_extractor(s.config.verify.extractor or s.pack.extractor)
    verify = get_verifier(s.pack.verifier)
    for t in trajectories:
        problem = problems[t.problem_id]
        t.answer = answer_for(extract, t.text, problem.answer)
        verdict = verify(problem.answer, t.answer)
        t.correct = verdict.correct
        t.outcome_reward = 1.0 if verdict.correct else 0.0
        t.meta["verdict"], t.meta["reason"] = verdict.status, verdict.reason
        gold = s.pack.check_steps(problem, t.steps) if gold_steps else None
        if gold is not None:
            t.meta["gold_steps"] = gold


def verify(s: Session, k: int) -> tuple[list[str], dict[str, Any]]:
    problems = {p.id: p for p in s.run.read_records(k, "problems.jsonl", Problem)}
    trajectories = s.run.read_records(k, "rollouts.jsonl", Trajectory)
    check_answers(s, problems, trajectories)
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


# ---------------------------------------------------------------------------------- label
def label(s: Session, k: int) -> tuple[list[str], dict[str, Any]]:
    """Run every configured labeller on the rollouts: labels.jsonl, and each trajectory's
    ``step_rewards`` (shaped as ``label.shaping`` says) in rollouts.jsonl."""
    cfg = s.config
    problems = {p.id: p for p in s.run.read_records(k, "problems.jsonl", Problem)}
    trajectories = s.run.read_records(k, "rollouts.jsonl", Trajectory)
    chosen = [t for t in trajectories if t.correct] if cfg.label.only_correct else trajectories
    if cfg.label.max_trajectories and len(chosen) > cfg.label.max_trajectories:
        rng = random.Random(seeding.derive(cfg.run.seed, "label-subset", k))
        chosen = sorted(rng.sample(chosen, cfg.label.max_trajectories), key=lambda t: t.id)
    ctx = s.label_context(k, problems)
    labels: list[StepLabels] = []
    metrics: dict[str, Any] = {"trajectories": len(chosen)}
    for name in cfg.label.labellers:
        with progress(f"iter {k} label {name}", 1) as update:
            got = get_labeller(name).label(chosen, ctx)
            update(1)
        labels.extend(got)
        by_id = {t.id: t for t in chosen}
        for lab in got:
            by_id[lab.trajectory_id].step_rewards[name] = shape(lab.labels, cfg.label.shaping, cfg.label.clip_eta)
        steps = [v for lab in got for v in lab.labels]
        metrics[f"{name}_mean"] = sum(steps) / len(steps) if steps else 0.0
        metrics.update(_pair_accuracies(name, [by_id[lab.trajectory_id] for lab in got]))
    rels = [s.run.write_records(k, "labels.jsonl", labels), s.run.write_records(k, "rollouts.jsonl", trajectories)]
    return rels, metrics


def _pair_accuracies(name: str, labelled: list[Trajectory]) -> dict[str, Any]:
    """``NAME_pair_accuracy_RULE`` for each selection rule (min, sum of the shaped step rewards):
    how often the labeller puts a problem's correct sample above its incorrect ones
    (`selection.pair_accuracy`), with ``NAME_pairs``; nothing when the label phase saw only one
    outcome per problem (`label.only_correct`)."""
    from reasoner.training.selection import RULES, pair_accuracy

    out: dict[str, Any] = {}
    verified = [t for t in labelled if t.correct is not None]
    for rule_name, rule in RULES.items():
        scored = [(t.problem_id, bool(t.correct), rule(t.step_rewards[name])) for t in verified]
        accuracy, pairs = pair_accuracy(scored)
        if pairs:
            out[f"{name}_pair_accuracy_{rule_name}"] = accuracy
            out[f"{name}_pairs"] = pairs
    return out


def shape(values: list[float], how: str, eta: float) -> list[float]:
    if not values:
        return []
    r = torch.tensor([values])
    return SHAPERS.lookup(how)(r, torch.ones_like(r), eta)[0].tolist()


# ------------------------------------------------------------------------------- evaluate
def evaluate(s: Session, k: int) -> tuple[list[str], dict[str, Any]]:
    """Greedy pass@1 and, with ``evaluate.k`` samples, maj@k and pass@k on the test split."""
    cfg, ec = s.config, s.config.evaluate
    problems = s.pack.problems("test", cfg.task.test_size, 0)
    spec = s.policy_after(k)
    backend = s.backend(spec)
    prompts = check_prompts(s, problems, backend.tokenizer)
    max_new = answer_tokens(s.pack.name, ec.max_new_tokens)
    greedy = Sampling(temperature=0.0, max_new_tokens=max_new, batch_size=cfg.generate.batch_size)
    with progress(f"iter {k} evaluate", len(problems) * (1 + ec.k)) as update:
        outs = backend.generate(prompts, greedy, progress=update)
        sampled = []
        if ec.k:
            sampling = Sampling(
                temperature=ec.temperature,
                max_new_tokens=max_new,
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
            meta={"finish": o.finish_reason, **o.meta},  # tools: executions, tool_spans
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
            meta={"finish": o.finish_reason, **o.meta},
        )
        for i, o in enumerate(sampled)
    ]
    by_id = {p.id: p for p in problems}
    check_answers(s, by_id, trajs + samples)
    report = summarise(problems, trajs, samples, ec.k)
    policy = s.run.rel(Path(spec)) if k > 0 else spec  # run-relative: runs can be moved
    report.update(iteration=k, policy=policy, test_size=len(problems), max_new_tokens=max_new)
    rels = [s.run.write_json(k, "eval.json", report), s.run.write_records(k, "eval_samples.jsonl", trajs)]
    return rels, {
        key: report[key]
        for key in (
            "pass@1",
            "pass@1_stderr",
            f"maj@{ec.k}",
            f"sampled_pass@{ec.k}",
            "cut_by_token_cap",
            "stopped_in_loop",
        )
        if key in report
    }


def summarise(problems: list[Problem], greedy: list[Trajectory], samples: list[Trajectory], k: int) -> dict:
    correct = [1.0 if t.correct else 0.0 for t in greedy]
    p1, se = scores.mean_stderr(correct)
    report: dict[str, Any] = {"pass@1": p1, "pass@1_stderr": se}  # greedy; sampled figures say so
    report["answer_found"] = sum(t.answer is not None for t in greedy) / max(len(greedy), 1)
    report["cut_by_token_cap"] = sum(t.meta.get("finish") == "length" for t in greedy) / max(len(greedy), 1)
    report["stopped_in_loop"] = sum(t.meta.get("finish") == "loop" for t in greedy) / max(len(greedy), 1)
    used = tools.summary([t.meta.get("executions", []) for t in greedy])
    if used is not None:
        report["tools"] = used
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
        report[f"sampled_pass@{k}"] = sum(pk) / len(pk)
    return report


def evaluate_steps(s: Session, k: int, n_problems: int, samples: int) -> tuple[dict, list[dict]]:
    """Sample solutions to test problems with the iteration's policy, label their steps with
    every configured labeller and score each against the pack's gold step labels. Returns the
    summary and one row per solution; writes nothing (the run is only read)."""
    from reasoner import stepeval

    cfg = s.config
    problems = s.pack.problems("test", n_problems, 0)
    if s.pack.check_steps(problems[0], ["1"]) is None:
        raise PackError(f"pack {s.pack.name} has no gold step labels; step-level evaluation needs arith")
    spec = s.policy_after(k)
    backend = s.backend(spec)
    settings = SearchSettings(
        samples=samples,
        temperature=cfg.generate.temperature,
        max_new_tokens=answer_tokens(s.pack.name, cfg.evaluate.max_new_tokens),
        batch_size=cfg.generate.batch_size,
        seed=seeding.derive(cfg.run.seed, "step-eval", k),
    )
    trajs = get_searcher("best_of_n")(problems, backend, s.pack, backend.tokenizer, settings).trajectories
    trajs = [t for t in trajs if t.steps]
    by_id = {p.id: p for p in problems}
    check_answers(s, by_id, trajs)
    gold = [s.pack.check_steps(by_id[t.problem_id], t.steps) for t in trajs]
    gold_first = [stepeval.first_error(g) for g in gold]
    ctx = s.label_context(k + 1, by_id)  # the reward model and judge trained in iteration k
    ctx.policy = spec
    result: dict[str, Any] = {
        "iteration": k,
        "policy": spec,
        "solutions": len(trajs),
        "steps": sum(len(t.steps) for t in trajs),
        "every_step_wrong": stepeval.every_step_wrong(gold),  # the floor (see reasoner.stepeval)
        "labellers": {},
    }
    details = [
        {"trajectory": t.id, "problem": t.problem_id, "steps": t.steps, "correct": t.correct, "gold": g, "scores": {}}
        for t, g in zip(trajs, gold, strict=True)
    ]
    for name in cfg.label.labellers:
        labeller = get_labeller(name)
        labels = labeller.label(trajs, ctx)
        variants = {name: ([lab.labels for lab in labels], labeller.threshold)}
        for extra, (key, threshold) in labeller.variants.items():
            variants[extra] = ([lab.meta[key] for lab in labels], threshold)
        for vname, (values, threshold) in variants.items():
            for row, v in zip(details, values, strict=True):
                row["scores"][vname] = v
            pred = [stepeval.predicted_first_error(sc, threshold, g) for sc, g in zip(values, gold, strict=True)]
            result["labellers"][vname] = {
                "threshold": threshold,
                "step_accuracy": stepeval.step_accuracy(gold, values, threshold),
                **stepeval.first_error_f1(gold_first, pred),
            }
    return result, details


# -------------------------------------------------------------------------------- balance
def balance(s: Session, k: int) -> tuple[list[str], dict[str, Any]]:
    """B-STaR: sample a fixed probe set of training problems with ``policy@k`` at each candidate
    temperature, verify (and score with `balance.reward`), and choose the next iteration's
    temperature and reward threshold by the balance score (`reasoner.balance`). Writes
    balance.json, which the next iteration's generate (and selection) read; the saved config
    is left as it is."""
    from reasoner import balance as bstar
    from reasoner.training.selection import RULES

    cfg, bc = s.config, s.config.balance
    problems = s.pack.problems("train", bc.probe_size, seeding.derive(cfg.run.seed, "probe"))
    by_id = {p.id: p for p in problems}
    backend = s.backend(s.policy_after(k))
    ctx = s.label_context(k + 1, by_id)  # the models after iteration k
    rule = RULES.lookup(cfg.train.select_rule)
    by_temperature: dict[float, list[bstar.Response]] = {}
    with progress(f"iter {k} balance", len(bc.temperatures)) as update:
        for i, temperature in enumerate(bc.temperatures):
            settings = SearchSettings(
                samples=bc.samples,
                temperature=temperature,
                top_p=cfg.generate.top_p,
                max_new_tokens=cfg.generate.max_new_tokens,
                batch_size=cfg.generate.batch_size,
                seed=seeding.derive(cfg.run.seed, "balance", k, i),
            )
            trajs = get_searcher("best_of_n")(problems, backend, s.pack, backend.tokenizer, settings).trajectories
            check_answers(s, by_id, trajs)
            scores = [0.0] * len(trajs)
            if bc.reward:
                labels = get_labeller(bc.reward).label(trajs, ctx)
                scores = [rule(shape(lab.labels, cfg.label.shaping, cfg.label.clip_eta)) for lab in labels]
            by_temperature[temperature] = [
                bstar.Response(t.problem_id, t.text, bool(t.correct), v) for t, v in zip(trajs, scores, strict=True)
            ]
            update(i + 1)
    temperature, threshold, table = bstar.choose(by_temperature, bc.quantiles if bc.reward else [0.0], bc.target)
    best = next(row for row in table if row["temperature"] == temperature and row["threshold"] == threshold)
    plan = {"temperature": temperature, "threshold": threshold if bc.reward else None, "reward": bc.reward or None}
    rel = s.run.write_json(k, "balance.json", {"plan": plan, "probe": [p.id for p in problems], "table": table})
    return [rel], {
        "next_temperature": temperature,
        "next_threshold": plan["threshold"],
        "balance": best["balance"],
        "pass_at_k": best["pass_at_k"],
        "distinct_correct": best["distinct_correct"],
        "exploitation": best["exploitation"],
    }
