"""The `reasoner` command: one thin command per phase, plus iterate, runs and report.

Each command parses its options and calls one library function; bad input (an unknown name,
a missing file, a malformed --set) prints one clear line and exits with code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from reasoner import config as cfg
from reasoner import grading, loop, report
from reasoner.console import console
from reasoner.models import ModelSpecError
from reasoner.records import RecordError
from reasoner.run import RunDir, RunError, list_runs
from reasoner.tasks import PackError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])

USER_ERRORS = (cfg.ConfigError, RunError, PackError, RecordError, ModelSpecError, KeyError, FileNotFoundError)

RunOpt = Annotated[str, typer.Option("--run", help="Run folder, or a name under ./runs/.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML config (default: configs/default.toml values).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a key: section.key=value (repeatable).")]
IterOpt = Annotated[int | None, typer.Option("--iteration", help="Iteration to act on (default: the first not done).")]


@app.callback()
def _quiet() -> None:
    """Keep library chatter (weight-loading bars, deprecation notes) out of the phase output."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)


def _fail(err: Exception) -> None:
    message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    console.print(f"[red]error:[/red] {message}", soft_wrap=True)
    raise typer.Exit(2)


def run_path(name: str) -> Path:
    path = Path(name)
    if path.exists() or "/" in name or name.startswith("."):
        return path
    return Path("runs") / name


def open_run(
    run: str, config_file: Path | None, overrides: list[str] | None, *, record: bool = True
) -> tuple[RunDir, cfg.Config]:
    """Create or reopen a run: a new run takes ``--config`` (or the defaults); an existing one
    keeps its saved config unless ``--config``/``--set`` change it, and then only keys a
    ``--set`` names. With ``record=False``, ``--set`` on an existing run applies to this command
    alone: the saved config, which later iterations follow, is left as it was."""
    rd = RunDir(run_path(run))
    overrides = overrides or []
    existing = rd.exists() and config_file is None
    base = rd.saved_config() if existing else cfg.load(config_file)
    config = cfg.apply_overrides(base, overrides)
    loop.validate(config)
    if existing and not record:
        rd.remove_stale_temporaries()
        return rd, config
    return rd, rd.open(config, overrides)


@app.command()
def iterate(run: RunOpt, config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Run the whole loop (or resume it at the first incomplete phase)."""
    try:
        rd, conf = open_run(run, config, set_)
        results = loop.iterate(rd, conf)
    except USER_ERRORS as err:
        _fail(err)
    console.print(report.eval_table(results))


def _phase(name: str, run: str, config: Path | None, set_: list[str] | None, iteration: int | None) -> None:
    try:
        rd, conf = open_run(run, config, set_)
        k = iteration if iteration is not None else loop.current_iteration(rd, conf, name)
        metrics = loop.run_single(rd, conf, k, name)
    except USER_ERRORS as err:
        _fail(err)
    console.print(json.dumps(metrics, indent=2))


@app.command()
def generate(run: RunOpt, config: ConfigOpt = None, set_: SetOpt = None, iteration: IterOpt = None) -> None:
    """Sample solutions to the iteration's training problems (writes rollouts.jsonl)."""
    _phase("generate", run, config, set_, iteration)


@app.command()
def verify(run: RunOpt, config: ConfigOpt = None, set_: SetOpt = None, iteration: IterOpt = None) -> None:
    """Check the rollouts' final answers and the pack's gold steps (rewrites rollouts.jsonl)."""
    _phase("verify", run, config, set_, iteration)


@app.command()
def label(run: RunOpt, config: ConfigOpt = None, set_: SetOpt = None, iteration: IterOpt = None) -> None:
    """Give every step of every rollout a process reward from each labeller (writes labels.jsonl)."""
    _phase("label", run, config, set_, iteration)


@app.command()
def train(run: RunOpt, config: ConfigOpt = None, set_: SetOpt = None, iteration: IterOpt = None) -> None:
    """Train the policy on verified rollouts (writes policy/, resumes from train_state/)."""
    _phase("train", run, config, set_, iteration)


@app.command()
def reward(run: RunOpt, config: ConfigOpt = None, set_: SetOpt = None, iteration: IterOpt = None) -> None:
    """Update the implicit PRM on the labelled rollouts' outcomes (writes reward/)."""
    _phase("reward", run, config, set_, iteration)


@app.command()
def judge(run: RunOpt, config: ConfigOpt = None, set_: SetOpt = None, iteration: IterOpt = None) -> None:
    """Train the stepwise judge by RL against Monte-Carlo step targets (writes judge/)."""
    _phase("judge", run, config, set_, iteration)


@app.command()
def evaluate(
    run: RunOpt,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    iteration: IterOpt = None,
    steps: Annotated[
        bool, typer.Option("--steps", help="Score the labellers against gold step labels instead.")
    ] = False,
    problems: Annotated[int, typer.Option(help="--steps: test problems sampled.")] = 100,
    samples: Annotated[int, typer.Option(help="--steps: solutions sampled per problem.")] = 4,
) -> None:
    """Score the iteration's policy on the held-out split (writes eval.json); with --steps, score
    every configured labeller against the pack's gold step correctness (writes steps.json;
    --set then applies to this evaluation only, not to the run's later iterations)."""
    if not steps:
        _phase("evaluate", run, config, set_, iteration)
        return
    try:
        rd, conf = open_run(run, config, set_, record=False)
        k = iteration if iteration is not None else loop.last_trained(rd, conf)
        result = loop.evaluate_steps(rd, conf, k, problems, samples)
    except USER_ERRORS as err:
        _fail(err)
    console.print(report.steps_table(result))


@app.command()
def grade(
    file: Annotated[Path, typer.Argument(help="JSONL with `prediction` and `gold` (and optionally `pack`) per line.")],
    pack: Annotated[str | None, typer.Option(help="Pack whose verifier judges lines that name none.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output JSONL (default: FILE with .graded.jsonl).")] = None,
) -> None:
    """Judge any tool's predictions with this project's verifiers; prints a summary table."""
    try:
        target = out or file.with_suffix(".graded.jsonl")
        summary = grading.grade_to(file, target, pack)
    except USER_ERRORS as err:
        _fail(err)
    console.print(report.grade_table(summary))
    console.print(f"wrote {target}")


@app.command()
def runs(root: Annotated[Path, typer.Option(help="Folder holding runs.")] = Path("runs")) -> None:
    """List runs with each phase's status."""
    console.print(report.runs_table(list_runs(root)))


@app.command("report")
def report_cmd(
    run: RunOpt,
    plot: Annotated[Path | None, typer.Option(help="Write an SVG plot of pass@1 and training loss.")] = None,
) -> None:
    """Per-iteration evaluation table of a run; optionally an SVG plot of its metrics."""
    try:
        rd = RunDir(run_path(run))
        rd.saved_config()
        console.print(report.run_table(rd))
        if plot is not None:
            report.write_svg(rd, plot)
            console.print(f"wrote {plot}")
    except USER_ERRORS as err:
        _fail(err)


if __name__ == "__main__":
    app()
