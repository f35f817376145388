"""One iteration is generate -> verify -> label -> train (policy) -> reward (implicit PRM) ->
judge (stepwise judge) -> evaluate; `iterate` chains iterations.

This is the only module that knows the order of phases. Each phase is skipped when the
manifest marks it complete, so calling `iterate` on an existing run resumes at the first
incomplete phase, and calling it on a finished run does nothing.
"""

from __future__ import annotations

import time

from reasoner import phases
from reasoner.config import Config
from reasoner.console import say
from reasoner.run import RunDir, RunError

ORDER = ["generate", "verify", "label", "train", "reward", "judge", "evaluate"]
TRAINING = {"train", "reward", "judge"}  # they decide their own resume point
BASELINE = 0  # iteration number of the starting model's evaluation


def run_phase(session: phases.Session, iteration: int, name: str, *, force: bool = False) -> dict:
    run = session.run
    if run.is_complete(iteration, name) and not force:
        return run.phase(iteration, name).get("metrics", {})
    if name not in TRAINING:  # training phases truncate metrics at their own resume point
        run.begin_phase(iteration, name)
    started = time.time()
    artefacts, metrics = phases.PHASES[name](session, iteration)
    metrics = {**metrics, "seconds": round(time.time() - started, 2)}
    run.complete_phase(iteration, name, artefacts, metrics)
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
    say(f"iter {iteration} {name}: {shown}")
    return metrics


def iterate(run: RunDir, config: Config) -> dict[int, dict]:
    """Run (or resume) every iteration; return each iteration's evaluation metrics."""
    session = phases.Session(run, config)
    results: dict[int, dict] = {}
    if config.run.baseline_eval:
        results[BASELINE] = run_phase(session, BASELINE, "evaluate")
    for k in range(1, config.run.iterations + 1):
        for name in ORDER:
            metrics = run_phase(session, k, name)
        results[k] = metrics
    return results


def current_iteration(run: RunDir, config: Config, phase: str) -> int:
    """The iteration a standalone phase command acts on: the first whose ``phase`` is not
    complete, or the last iteration when all are."""
    for k in range(1, config.run.iterations + 1):
        if not run.is_complete(k, phase):
            return k
    return config.run.iterations


def run_single(run: RunDir, config: Config, iteration: int, name: str) -> dict:
    """Run one phase on its own (the phase commands); refuses when its input is not ready."""
    if name not in phases.PHASES:
        raise KeyError(f"unknown phase {name!r}; valid: {', '.join(ORDER)}")
    if not 0 <= iteration <= config.run.iterations or (iteration == 0 and name != "evaluate"):
        raise RunError(f"iteration {iteration} is outside this run (1..{config.run.iterations})")
    session = phases.Session(run, config)
    return run_phase(session, iteration, name)


def validate(config: Config) -> None:
    """Fail early, before a run folder is written, on names no registry knows."""
    from reasoner.generation import get_backend
    from reasoner.search import get_searcher
    from reasoner.tasks import get_pack
    from reasoner.training.engine import get_engine
    from reasoner.training.objectives import get_objective
    from reasoner.verifiers import get_extractor

    t = config.task
    get_pack(t.pack, source=t.source, prompt=t.prompt, difficulty=t.difficulty)
    get_backend(config.generate.backend)
    get_searcher(config.generate.searcher)
    get_engine(config.train.engine)
    get_objective(config.train.objective)
    get_extractor(config.verify.extractor)
    from reasoner.rewards import get_labeller

    for name in config.label.labellers:
        get_labeller(name)


def evaluate_steps(run: RunDir, config: Config, iteration: int, problems: int, samples: int) -> dict:
    """Step-level evaluation of every configured labeller (`reasoner evaluate --steps`)."""
    if not config.label.labellers:
        raise RunError("no labellers to evaluate: set label.labellers, e.g. --set 'label.labellers=[\"mc\"]'")
    session = phases.Session(run, config)
    return phases.evaluate_steps(session, iteration, problems, samples)


def last_trained(run: RunDir, config: Config) -> int:
    """The last iteration whose policy is trained (0: the starting model)."""
    done = [k for k in range(1, config.run.iterations + 1) if run.is_complete(k, "train")]
    return max(done, default=0)
