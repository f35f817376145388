"""Runs a recipe (`reasoner.recipes`): its phases in order for every iteration; `iterate`
chains iterations, `run_single` runs one phase for the phase commands.

This is the only module that walks the order of phases. Each phase is skipped when the
manifest marks it complete, so calling `iterate` on an existing run resumes at the first
incomplete phase, and calling it on a finished run does nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

from reasoner import launch, phases
from reasoner.atomic import atomic_write_json, atomic_write_jsonl
from reasoner.config import Config, ConfigError
from reasoner.console import say
from reasoner.ranks import LaunchError, barrier
from reasoner.recipes import Phase, get_phase, get_recipe, phases_of
from reasoner.run import FAILED, INTERRUPTED, RunDir, RunError
from reasoner.session import Session

BASELINE = 0  # iteration number of the starting model's evaluation


def evaluates(config: Config, iteration: int) -> bool:
    """Whether `iterate` evaluates after ``iteration`` (1..run.iterations): every
    evaluate.every-th iteration and the last."""
    return iteration % config.evaluate.every == 0 or iteration == config.run.iterations


def plan(config: Config, every_evaluation: bool = False) -> list[tuple[int, str]]:
    """Every (iteration, phase) `iterate` runs, in order. ``every_evaluation`` adds the
    evaluations that evaluate.every skips, which `reasoner evaluate --run` may still run (the
    order a redo or a repair walks)."""
    recipe = [p.name for p in phases_of(config)]
    first = [(BASELINE, "evaluate")] if config.run.baseline_eval and "evaluate" in recipe else []
    return first + [
        (k, name)
        for k in range(1, config.run.iterations + 1)
        for name in recipe
        if name != "evaluate" or every_evaluation or evaluates(config, k)
    ]


def _declared(config: Config) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    recipe = phases_of(config)
    return {p.name: p.writes for p in recipe}, {p.name: p.scratch for p in recipe}


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def run_phase(session: Session, iteration: int, phase: Phase) -> dict:
    run, name = session.run, phase.name
    if run.is_complete(iteration, name):
        return run.phase(iteration, name).get("metrics", {})
    if phase.produces and session.config.train.launcher and not run.ranks.launched:
        launch.run(session.config.train, name, run.path, iteration)  # the launched rank 0 records it
        if not run.is_complete(iteration, name):
            raise RunError(f"{name} of iteration {iteration} ended under {session.config.train.launcher} unfinished")
        metrics = run.phase(iteration, name).get("metrics", {})
        say(f"iter {iteration} {name} ({session.config.train.launcher}): done")
        return metrics
    if not phase.resumes_itself:  # training phases truncate metrics at their own resume point
        run.begin_phase(iteration, name)
    started = time.time()
    try:
        artefacts, metrics = phase.run(session, iteration)
    except Exception as err:
        run.end_phase(iteration, name, FAILED, one_line(err))
        raise
    except BaseException as err:  # Ctrl-C, or SIGTERM turned into SystemExit by the CLI
        run.end_phase(iteration, name, INTERRUPTED, type(err).__name__)
        raise
    metrics = {**metrics, "seconds": round(time.time() - started, 2)}
    run.complete_phase(iteration, name, artefacts, metrics)
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
    say(f"iter {iteration} {name}: {shown}")
    return metrics


def redo(run: RunDir, config: Config, iteration: int, name: str, reason: str) -> None:
    """Mark (iteration, name) and every phase after it pending; the next run of the loop (or
    of that phase's command) does them again. Old artefacts stay until new ones replace them."""
    order = plan(config, every_evaluation=True)
    if (iteration, name) not in order:
        raise RunError(f"cannot redo {name} of iteration {iteration}: this run has no such phase")
    later = order[order.index((iteration, name)) :]
    n = run.invalidate(later, reason, _declared(config)[1])
    say(f"iter {iteration} {name}: {reason}; it and {max(n - 1, 0)} started phases after it will run again")


def repair(run: RunDir, config: Config) -> tuple[int, str] | None:
    """Check every complete phase's artefacts against the manifest's sizes and sha256; from the
    first phase with a missing or changed artefact on, mark the phases to be redone."""
    bad = run.broken(plan(config, every_evaluation=True), _declared(config)[0])
    if bad is None:
        return None
    k, name, why = bad
    redo(run, config, k, name, why)
    return k, name


def iterate(run: RunDir, config: Config, redo_phase: tuple[int, str] | None = None) -> dict[int, dict]:
    """Run (or resume) every iteration; return each iteration's evaluation metrics.
    ``redo_phase`` (iteration, phase) is run again, and every phase after it."""
    if run.ranks.launched:
        raise LaunchError(
            "reasoner iterate runs in one process: set train.launcher to run its training phases under a"
            " launcher, or run a training phase's command (reasoner train) under torchrun or deepspeed"
        )
    if redo_phase is not None:
        redo(run, config, *redo_phase, reason="redo asked with --redo")
    repair(run, config)
    session = Session(run, config)
    results: dict[int, dict] = {}
    metrics: dict = {}
    for k, name in plan(config):
        metrics = run_phase(session, k, get_phase(session.recipe, name))
        if name == "evaluate":
            results[k] = metrics
    return results


def current_iteration(run: RunDir, config: Config, phase: str, redo: bool = False) -> int:
    """The iteration a standalone phase command acts on: the first in which `iterate` runs
    ``phase`` and has not completed it, or the last iteration when all are. With ``redo``: the
    last one that started it."""
    if redo:
        started = [
            k for k in range(config.run.iterations + 1) if run.phase(k, phase).get("status", "pending") != "pending"
        ]
        if not started:
            raise RunError(f"{run.path}: {phase} has not run in any iteration yet; nothing to redo")
        return max(started)
    for k in sorted({k for k, name in plan(config) if name == phase and k != BASELINE}):
        if not run.is_complete(k, phase):
            return k
    return config.run.iterations


def check_launched(config: Config, name: str, redo_phase: bool) -> None:
    """Under a launcher only training phases run, and none is redone (rank 0 alone could not
    tell the other ranks in time)."""
    if not get_phase(phases_of(config), name).produces:
        raise LaunchError(f"{name} runs in one process; only training phases run under a launcher")
    if redo_phase:
        raise LaunchError("--redo under a launcher: mark the phase from one process first (reasoner PHASE --redo)")


def run_single(run: RunDir, config: Config, iteration: int, name: str, redo_phase: bool = False) -> dict:
    """Run one phase on its own (the phase commands); refuses when its input is not ready."""
    phase = get_phase(phases_of(config), name)
    if not 0 <= iteration <= config.run.iterations or (iteration == 0 and name != "evaluate"):
        raise RunError(f"iteration {iteration} is outside this run (1..{config.run.iterations})")
    order = plan(config, every_evaluation=True)
    if run.ranks.main:  # rank 0 repairs; the others read the manifest it leaves (after the barrier)
        if redo_phase:
            redo(run, config, iteration, name, "redo asked with --redo")
        bad = run.broken(order, _declared(config)[0])
        if bad is not None and order.index(bad[:2]) <= order.index((iteration, name)):
            redo(run, config, bad[0], bad[1], bad[2])
            if bad[:2] != (iteration, name):
                raise RunError(
                    f"{bad[2]}: {bad[1]} of iteration {bad[0]} must run again before {name} of iteration "
                    f"{iteration}; `reasoner iterate --run {run.path}` does both"
                )
    barrier()
    if run.is_complete(iteration, name):
        say(f"iter {iteration} {name} is already complete (its saved metrics follow); --redo runs it again")
    return run_phase(Session(run, config), iteration, phase)


def validate(config: Config) -> None:
    """Fail early, before a run folder is written: names no registry knows, model specs that
    name nothing loadable, a device this torch cannot use."""
    from reasoner import board, models
    from reasoner.generation import get_backend
    from reasoner.search import get_searcher
    from reasoner.tasks import get_pack
    from reasoner.training.engine import get_engine
    from reasoner.training.objectives import OBJECTIVES
    from reasoner.verifiers import get_extractor

    board.wanted(config.run.report_to)
    launch.check(config.train)
    t = config.task
    get_pack(t.pack, source=t.source, prompt=t.prompt, difficulty=t.difficulty)
    require = getattr(get_backend(config.generate.backend), "require", None)
    if require is not None:  # say how to install an optional backend before any phase runs
        require()
    get_searcher(config.generate.searcher)
    for role in ("policy", "reward", "judge"):
        settings = getattr(config.train, role)
        get_engine(settings.engine)
        if settings.engine == "deepspeed":  # say how to install it before any phase runs
            from reasoner.training.zero import ds_config, require_deepspeed

            require_deepspeed()
            ds_config(settings, 1)  # a bad deepspeed_config file fails here, naming the file
        objective = OBJECTIVES.lookup(settings.objective)
        if role not in getattr(objective, "roles", (role,)):
            raise ConfigError(
                f"train.{role}.objective = {settings.objective!r} trains {', '.join(objective.roles)}, not the {role}"
            )
    if config.verify.extractor:
        get_extractor(config.verify.extractor)
    get_recipe(config.run.recipe)
    from reasoner.rewards import get_labeller

    for name in config.label.labellers:
        get_labeller(name)
    from reasoner.rewards.judge_rules import RULES
    from reasoner.rewards.shaping import SHAPERS

    RULES.lookup(config.label.judge_rule)
    from reasoner.training.selection import RULES as SELECTION_RULES

    SELECTION_RULES.lookup(config.train.select_rule)
    SELECTION_RULES.lookup(config.train.rank_rule)
    objective = OBJECTIVES.lookup(config.train.policy.objective)
    if getattr(objective, "rankings", False) and config.train.rank_by not in config.label.labellers:
        raise ConfigError(
            f"train.policy.objective = {config.train.policy.objective!r} ranks samples by train.rank_by = "
            f"{config.train.rank_by!r}, but label.labellers does not run it; add it there"
        )
    from reasoner.training.objectives.spark import TASKS as SPARK_TASKS

    unknown = [kind for kind in config.train.spark_tasks if kind not in SPARK_TASKS]
    if unknown:
        raise ConfigError(f"train.spark_tasks: {unknown[0]!r} is not one of {', '.join(SPARK_TASKS)}")
    if config.train.select_by and config.train.select_by not in config.label.labellers:
        raise ConfigError(
            f"train.select_by = {config.train.select_by!r} but label.labellers does not run it; add it there"
        )
    if config.train.dpo_nll and config.train.policy.objective not in ("dpo", "mutual"):
        raise ConfigError(
            f"train.dpo_nll adds a term to DPO's loss, but train.policy.objective = "
            f"{config.train.policy.objective!r}; it goes with dpo or mutual"
        )
    if config.train.dpo_nll < 0:
        raise ConfigError(f"train.dpo_nll must be >= 0, got {config.train.dpo_nll}")
    if config.label.code_answer and "code" not in config.label.labellers:
        raise ConfigError("label.code_answer checks the code labeller's answers, but label.labellers does not run it")
    if config.label.only_correct:
        if config.run.recipe != "rft" or config.train.policy.objective != "rft":
            raise ConfigError(
                "label.only_correct labels no incorrect rollout, which this recipe's reward models or "
                f"objective learn from (run.recipe = {config.run.recipe!r}, train.policy.objective = "
                f"{config.train.policy.objective!r}); it goes with the rft recipe and objective"
            )
        if config.train.select_by and config.train.select_calibrate:
            raise ConfigError(
                "label.only_correct leaves no incorrect rollout to calibrate train.select_threshold on: "
                "set train.select_calibrate = false and a train.select_threshold"
            )
    SHAPERS.lookup(config.label.shaping)
    for key in ("beam_scorer", "mcts_value"):
        name = getattr(config.search, key)
        if name != "none" and getattr(get_labeller(name), "search_scores", None) is None:
            raise ConfigError(f"search.{key} = {name!r}: that labeller cannot score partial solutions")
    models.check_device(config.run.device)
    for spec in {config.model.policy, config.label.reward_model, config.label.judge_model} - {""}:
        models.check(spec)


def evaluate_steps(
    run: RunDir, config: Config, iteration: int, problems: int, samples: int, out: Path | None = None
) -> tuple[dict, Path]:
    """Step-level evaluation of every configured labeller (`reasoner evaluate --steps`). The run
    is only read; steps.json and steps.jsonl go to ``out`` (default: ``RUN.steps/iter_K/``
    beside the run folder)."""
    if not config.label.labellers:
        raise RunError("no labellers to evaluate: set label.labellers, e.g. --set 'label.labellers=[\"mc\"]'")
    session = Session(run, config)
    result, details = phases.evaluate_steps(session, iteration, problems, samples)
    out = Path(out) if out is not None else run.path.with_name(run.path.name + ".steps") / f"iter_{iteration:04d}"
    atomic_write_json(out / "steps.json", result)
    atomic_write_jsonl(out / "steps.jsonl", details)
    return result, out


def last_trained(run: RunDir, config: Config) -> int:
    """The last iteration whose models are trained: every phase of the recipe that trains one
    (train, reward, judge, prime, mstep) is complete (0: the starting model)."""
    training = [p.name for p in phases_of(config) if p.produces]
    done = [k for k in range(1, config.run.iterations + 1) if all(run.is_complete(k, p) for p in training)]
    return max(done, default=0)
