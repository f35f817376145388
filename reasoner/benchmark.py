"""`reasoner evaluate --model`: score any model on a pack's split or a user's data, outside runs.

MODEL is a model folder, a hub name, `smollm2-135m`, `tiny[:N]`, a run (its latest policy) or
``RUN@K`` (the policy after iteration K; ``RUN@0`` is the run's starting model). Reported:
greedy accuracy with its standard error; with ``k`` samples, sampled pass@1, unbiased pass@k,
maj@k and, with a reward, best-of-k ranked by the reward's step scores under a named rule;
per-level and per-subject tables where the data has them; the share of answers cut by the token
cap. Problems are done in chunks saved under OUT/parts, so a killed evaluation resumes where it
stopped; OUT/settings.json pins what the parts were made with.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from reasoner import config as cfg
from reasoner import evaluate as scores
from reasoner import seeding, tools
from reasoner.atomic import atomic_write_json
from reasoner.console import progress, say
from reasoner.errors import UserError
from reasoner.evaldata import level_of, load_problems
from reasoner.generation import Sampling
from reasoner.records import Problem, Trajectory, iter_objects
from reasoner.run import ChunkStore, RunDir
from reasoner.session import Session

# Tokens a pack's answers need (evaluate.max_new_tokens = 0 picks these): measured with the
# embedded model, 96 tokens cut 18 of 20 GSM8K and 14 of 20 MATH answers short.
ANSWER_TOKENS = {"arith": 96, "gsm8k": 384, "math": 768}
DEFAULT_ANSWER_TOKENS = 512


def answer_tokens(pack: str, configured: int) -> int:
    """``evaluate.max_new_tokens``, or the pack's own cap when it is 0."""
    return configured or ANSWER_TOKENS.get(pack, DEFAULT_ANSWER_TOKENS)


@dataclass(frozen=True)
class Request:
    model: str
    pack: str = ""  # '' = the run's pack when MODEL is a run, else gsm8k
    source: str = ""  # the pack's data folder or hub name ('' = the run's)
    data: str = ""  # a user's JSONL file or datasets folder
    question: str = "question"
    answer: str = "answer"
    split: str = "test"
    limit: int = 0  # 0 = every problem
    k: int = 0
    temperature: float = 0.8
    max_new_tokens: int = 0  # 0 = the pack's own
    prompt: str = ""  # fewshot, zeroshot or tools ('' = the run's, else fewshot)
    reward: str = ""  # labeller ranking best-of-k: implicit, judge, mc ...
    reward_model: str = ""  # its model ('' = the run's reward@K / judge@K)
    reference: str = ""  # the implicit PRM's reference ('' = the run's)
    rank: str = "min"
    batch_size: int = 32
    chunk: int = 64
    seed: int = 0
    device: str = "cpu"
    stop_loops: bool | None = None  # None: the run's generate.stop_loops (off for a bare model)


@dataclass
class Resolved:
    policy: str
    run: RunDir | None = None
    iteration: int | None = None
    reward: str = ""
    judge: str = ""
    reference: str = ""
    base: cfg.Config | None = None  # the run's config


def resolve_model(model: str) -> Resolved:
    """A model spec, a run (its latest trained policy) or ``RUN@K``."""
    from reasoner import loop, models
    from reasoner.run import run_path

    name, _, at = model.rpartition("@") if "@" in model else (model, "", "")
    path = run_path(name) if name else None
    if path is not None and (path / "config.toml").exists():
        rd = RunDir(path)
        conf = rd.saved_config()
        if at and not at.isdigit():
            raise UserError(f"model {model!r}: after @ comes an iteration number (RUN@3)")
        k = int(at) if at else loop.last_trained(rd, conf)
        if k > conf.run.iterations:
            raise UserError(f"model {model!r}: the run has {conf.run.iterations} iterations")
        s = Session(rd, conf)
        return Resolved(
            policy=s.policy_after(k),
            run=rd,
            iteration=k,
            reward=s.roles.spec("reward", k),
            judge=s.roles.spec("judge", k),
            reference=s.roles.spec("reference", 0),
            base=conf,
        )
    if at and name and Path(name).exists():
        raise UserError(f"model {model!r}: {name} is not a run (no config.toml), so @{at} means nothing")
    models.check(model)
    return Resolved(policy=model)


def session_for(req: Request, res: Resolved, out: Path) -> Session:
    """A session whose config evaluates ``res.policy`` as asked (the run's settings where the
    request leaves them open)."""
    base = res.base or cfg.Config()
    pack = req.pack or (base.task.pack if res.base else "gsm8k")
    same_pack = res.base is not None and pack == base.task.pack
    source = req.source or (base.task.source if same_pack else "")
    # few-shot examples come from the pack's train split: with only a user's file, zero-shot
    needs_source = pack in ("gsm8k", "math") and not source
    style = req.prompt or (base.task.prompt if same_pack else "zeroshot" if needs_source else "fewshot")
    if style == "fewshot" and needs_source:
        raise UserError(f"a few-shot {pack} prompt takes its examples from --source (the pack's train split)")
    task = replace(
        base.task, pack=pack, source=source, prompt=style, difficulty=base.task.difficulty if same_pack else {}
    )
    label = replace(
        base.label,
        reward_model=req.reward_model or res.reward,
        judge_model=req.reward_model or res.judge,
    )
    conf = replace(
        base,
        # the run's prompt-length cap was set for its own pack's prompts
        model=replace(base.model if same_pack else cfg.ModelConfig(), policy=res.policy),
        task=task,
        label=label,
        run=replace(base.run, device=req.device, seed=req.seed),
        generate=replace(
            base.generate,
            batch_size=req.batch_size,
            stop_loops=base.generate.stop_loops if req.stop_loops is None else req.stop_loops,
        ),
    )
    return Session(RunDir(out), conf)


def load(req: Request, s: Session) -> list[Problem]:
    limit = req.limit or None
    if req.data:
        return load_problems(Path(req.data), pack=s.pack.name, question=req.question, answer=req.answer, limit=limit)
    return s.pack.problems(req.split, limit or 10**9, req.seed)


def check_settings(out: Path, settings: dict[str, Any]) -> None:
    """OUT keeps one evaluation: parts made with other settings are never mixed in."""
    path = out / "settings.json"
    if path.exists():
        saved = json.loads(path.read_text())
        changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
        if changed:
            raise UserError(
                f"{out} holds an evaluation made with other settings ({', '.join(changed)}); "
                "use another --out, or delete it to start again"
            )
        return
    atomic_write_json(path, settings)


def run(req: Request, out: Path) -> dict[str, Any]:
    """Evaluate, resuming from OUT's saved parts; write OUT/eval.json and OUT/samples.jsonl."""
    from reasoner.phases import check_prompts

    if req.rank not in scores.RANK_RULES:
        raise UserError(f"--rank must be one of {', '.join(scores.RANK_RULES)}, got {req.rank!r}")
    if req.reward and not req.k:
        raise UserError("--reward ranks sampled solutions: give --k N (N >= 2)")
    res = resolve_model(req.model)
    s = session_for(req, res, out)
    if req.reward:
        from reasoner.rewards import get_labeller

        get_labeller(req.reward)
    problems = load(req, s)
    max_new = answer_tokens(s.pack.name, req.max_new_tokens)
    settings = {
        **asdict(req),
        "policy": res.policy,
        "pack": s.pack.name,
        "prompt": s.config.task.prompt,
        "max_new_tokens": max_new,
        "problems": len(problems),
        "stop_loops": s.config.generate.stop_loops or None,  # as it is (None when off: older folders lack it)
    }
    out.mkdir(parents=True, exist_ok=True)  # only once the request is known to be good
    check_settings(out, settings)
    backend = s.backend(res.policy)
    prompts = check_prompts(s, problems, backend.tokenizer)
    store = ChunkStore(out / "parts")
    chunks = [range(i, min(i + req.chunk, len(problems))) for i in range(0, len(problems), req.chunk)]
    todo = [c for c, _ in enumerate(chunks) if not store.has(c)]
    if len(todo) < len(chunks):
        say(f"resuming {out}: {len(chunks) - len(todo)} of {len(chunks)} chunks already done")
    per = 1 + req.k  # generations per problem
    done = sum(len(chunks[c]) for c in range(len(chunks)) if c not in todo) * per
    with progress(f"evaluate {Path(res.policy).name}", len(problems) * per, start=done) as update:
        update(done)
        for c in todo:
            idx = chunks[c]
            at = done
            tick = lambda n, at=at: update(at + n)  # noqa: E731 - generations finished in this chunk
            rows = _chunk(s, req, res, [problems[i] for i in idx], [prompts[i] for i in idx], max_new, c, tick)
            store.write(c, rows)
            done += len(idx) * per
            update(done)
    rows = [row for c in range(len(chunks)) for _, row in iter_objects(store.path(c))]
    summary = summarise(problems, rows, req)
    summary.update(
        model=req.model,
        policy=res.policy,
        pack=s.pack.name,
        data=req.data or s.config.task.source,
        split=req.split if not req.data else "file",
        prompt_style=s.config.task.prompt,
        max_new_tokens=max_new,
    )
    atomic_write_json(out / "eval.json", summary)
    (out / "samples.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    (out / "prompt.txt").write_text(prompts[0])  # rendered once, by check_prompts
    return summary


def _chunk(
    s: Session,
    req: Request,
    res: Resolved,
    problems: list[Problem],
    prompts: list[str],
    max_new: int,
    index: int,
    tick=lambda n: None,
) -> list[dict[str, Any]]:
    """Greedy answers, ``k`` samples and their reward scores for one chunk of problems."""
    from reasoner.phases import check_answers

    backend = s.backend(res.policy)
    greedy = Sampling(temperature=0.0, max_new_tokens=max_new, batch_size=req.batch_size)
    outs = backend.generate(prompts, greedy, progress=tick)
    sampled = []
    if req.k:
        sampling = Sampling(
            temperature=req.temperature,
            max_new_tokens=max_new,
            batch_size=req.batch_size,
            seed=seeding.derive(req.seed, "evaluate", index),
        )
        sampled = backend.generate(
            [p for p in prompts for _ in range(req.k)], sampling, progress=lambda n: tick(len(prompts) + n)
        )
    by_id = {p.id: p for p in problems}

    def traj(p: Problem, prompt: str, o, name: str) -> Trajectory:
        return Trajectory(
            id=f"{p.id}/{name}",
            problem_id=p.id,
            prompt=prompt,
            steps=s.pack.split_steps(o.text),
            text=o.text,
            source=name,
            num_tokens=len(o.token_ids),
            meta={"finish": o.finish_reason, **o.meta},  # tools: executions, tool_spans
        )

    heads = [traj(p, pr, o, "greedy") for p, pr, o in zip(problems, prompts, outs, strict=True)]
    tails = [traj(problems[i // req.k], prompts[i // req.k], o, f"s{i % req.k}") for i, o in enumerate(sampled)]
    check_answers(s, by_id, heads + tails, gold_steps=False)
    step_scores: list[list[float]] = []
    if req.reward and tails:
        from reasoner.rewards import get_labeller

        ctx = s.label_context(1, by_id)
        if res.reference or req.reference:
            ctx.reference_spec = req.reference or res.reference
        step_scores = [lab.labels for lab in get_labeller(req.reward).label(tails, ctx)]
    rows = []
    for j, (p, prompt, g) in enumerate(zip(problems, prompts, heads, strict=True)):
        group = tails[j * req.k : (j + 1) * req.k]
        row: dict[str, Any] = {
            "problem": p.id,
            "question": p.question,
            "gold": p.answer,
            "meta": p.meta,
            "prompt": prompt,
            "greedy": _sample(g),
            "samples": [_sample(t) for t in group],
        }
        if step_scores:
            row["step_scores"] = step_scores[j * req.k : (j + 1) * req.k]
        rows.append(row)
    return rows


def _sample(t: Trajectory) -> dict[str, Any]:
    return {
        "text": t.text,
        "answer": t.answer,
        "correct": bool(t.correct),
        "verdict": t.meta.get("verdict"),
        "finish": t.meta.get("finish"),
        "tokens": t.num_tokens,
        **({"executions": t.meta["executions"]} if t.meta.get("executions") else {}),
    }


def summarise(problems: list[Problem], rows: list[dict[str, Any]], req: Request) -> dict[str, Any]:
    """Greedy accuracy (named apart from sampled pass@k), maj@k, unbiased pass@k, best-of-k by
    the reward, the shares cut by the token cap and stopped in a loop, and per-level / per-subject tables."""
    greedy = [1.0 if r["greedy"]["correct"] else 0.0 for r in rows]
    acc, se = scores.mean_stderr(greedy)
    report: dict[str, Any] = {
        "problems": len(rows),
        "greedy_accuracy": acc,
        "greedy_stderr": se,
        "answer_found": sum(r["greedy"]["answer"] is not None for r in rows) / max(len(rows), 1),
        "cut_by_token_cap": sum(r["greedy"]["finish"] == "length" for r in rows) / max(len(rows), 1),
        "stopped_in_loop": sum(r["greedy"]["finish"] == "loop" for r in rows) / max(len(rows), 1),
    }
    used = tools.summary([r["greedy"].get("executions", []) for r in rows])
    if used is not None:
        report["greedy_tools"] = used
    if req.k:
        counts = [(len(r["samples"]), sum(x["correct"] for x in r["samples"])) for r in rows]
        report["k"] = req.k
        report["sampled_pass@1"] = sum(c / n for n, c in counts) / len(counts)
        for kk in scores.ks_upto(req.k):
            report[f"sampled_pass@{kk}"] = sum(scores.pass_at_k(n, c, kk) for n, c in counts) / len(counts)
        maj = [scores.majority([x["answer"] for x in r["samples"]], [x["correct"] for x in r["samples"]]) for r in rows]
        report[f"maj@{req.k}"] = sum(maj) / len(maj)
        cut = sum(x["finish"] == "length" for r in rows for x in r["samples"])
        report["sampled_cut_by_token_cap"] = cut / max(sum(n for n, _ in counts), 1)
        if req.reward:
            picks = [scores.best_of(r["step_scores"], [x["correct"] for x in r["samples"]], req.rank)[1] for r in rows]
            pairs = [
                scores.pairwise_accuracy(r["step_scores"], [x["correct"] for x in r["samples"]], req.rank) for r in rows
            ]
            hits, n_pairs = sum(h for h, _ in pairs), sum(n for _, n in pairs)
            report[f"best_of_{req.k}"] = {
                "reward": req.reward,
                "rank": req.rank,
                "accuracy": sum(picks) / len(picks),
                # the reward's own accuracy: (correct, incorrect) sample pairs it orders right
                "pairwise_accuracy": hits / n_pairs if n_pairs else None,
                "verified_pairs": n_pairs,
            }
    for key, label in (("level", "by_level"), ("subject", "by_subject")):
        groups = [(level_of(p) if key == "level" else str(p.meta.get(key, ""))) for p in problems]
        if any(groups):
            report[label] = scores.by_group([g or "?" for g in groups], greedy)
    return report
