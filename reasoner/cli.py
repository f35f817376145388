"""The `reasoner` command: one thin command per phase, plus iterate, runs and report.

Each command parses its options and calls one library function; bad input (an unknown name,
a missing file, a malformed --set) prints one clear line and exits with code 2.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from reasoner import config as cfg
from reasoner import grading, loop, ranks, recipes, report
from reasoner.console import console, out
from reasoner.errors import UserError
from reasoner.run import RunDir, list_runs, run_path

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help=__doc__.splitlines()[0],
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,  # click's plain help: flags read as flags, not "--steps <bool>"
)

RunOpt = Annotated[
    str,
    typer.Option(
        "--run",
        "--run-dir",
        metavar="RUN",
        help="Run folder, or a name under ./runs/ (--run-dir: the same, for torchrun, which takes --run as its own).",
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="TOML config (default: each key's built-in default; configs/default.toml is the tuned main run).",
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="KEY=VALUE", help="Override a key: section[.table].key=value (repeatable)."),
]
IterOpt = Annotated[
    int | None, typer.Option("--iteration", metavar="K", help="Iteration to act on (default: the first not done).")
]
RedoOpt = Annotated[bool, typer.Option("--redo", help="Run the phase again (and mark every later phase to run again).")]
LaunchedOpt = Annotated[
    str | None, typer.Option("--launched-by", hidden=True, help="Set by iterate's launcher: the lock holder PID@HOST.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout instead of a table.")]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"reasoner {version('reasoner')}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _setup(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Keep library chatter (weight-loading bars, deprecation notes) out of the phase output, and
    let SIGTERM unwind like Ctrl-C so the phase it stops is marked interrupted."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    plain = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 - warnings' signature
        if issubclass(category, cfg.ConfigDeprecation):
            console.print(Text.assemble(("warning: ", "yellow"), str(message)), soft_wrap=True)
        else:
            plain(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _fail(err: UserError) -> None:
    """One line on stderr, exit 2. The message is printed as text: brackets in it (a TOML
    section, a list) are not read as rich markup."""
    message = " ".join(str(err).split())
    console.print(Text.assemble(("error: ", "red"), message), soft_wrap=True)
    raise typer.Exit(2)


def _json(data: object) -> None:
    out.print(json.dumps(data, indent=2, sort_keys=True), markup=False, highlight=False, soft_wrap=True)


def open_run(
    run: str,
    config_file: Path | None,
    overrides: list[str] | None,
    *,
    record: bool = True,
    launched_by: str | None = None,
) -> tuple[RunDir, cfg.Config]:
    """Create or reopen a run: a new run takes ``--config`` (or the defaults); an existing one
    keeps its saved config unless ``--config``/``--set`` change it, and then only keys a
    ``--set`` names. The writer's lock is taken (`RunDir.close` releases it); everything is
    checked before a new run folder is made. With ``record=False`` the run is only read: no
    lock, and ``--set`` on an existing run applies to this command alone. Under a launcher
    (`reasoner.ranks`) rank 0 opens it as the writer and the other ranks as followers."""
    rd = RunDir(run_path(run), ranks.current())
    overrides = overrides or []
    existing = rd.exists() and config_file is None
    base = rd.saved_config() if existing else cfg.load(config_file)
    config = cfg.apply_overrides(base, overrides)
    loop.validate(config)
    if not record:
        if config_file is None:
            rd.saved_config()  # without --config, a read-only command needs an existing run
        return rd, config
    new = not rd.exists()
    config = rd.open(config, overrides, launched_by=launched_by)
    rd.created_here = new
    return rd, config


def _discard_if_empty(rd: RunDir) -> None:
    """A run this command created and then refused before writing any artefact leaves no folder."""
    if rd.created_here and not any(rd.path.glob("iter_*")):
        rd.close()
        shutil.rmtree(rd.path, ignore_errors=True)


@app.command()
def iterate(
    run: RunOpt,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    redo: Annotated[
        str | None,
        typer.Option("--redo", metavar="PHASE", help="Phase to run again (with --iteration), and all after it."),
    ] = None,
    iteration: Annotated[
        int | None, typer.Option("--iteration", metavar="K", help="--redo: its iteration (default 1).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the whole loop (or resume it at the first incomplete phase)."""
    if iteration is not None and redo is None:
        _fail(cfg.ConfigError("--iteration goes with --redo PHASE"))
    rd = None
    try:
        rd, conf = open_run(run, config, set_)
        with rd:
            target = None if redo is None else (iteration if iteration is not None else 1, redo)
            results = loop.iterate(rd, conf, redo_phase=target)
    except UserError as err:
        if rd is not None:
            _discard_if_empty(rd)
        _fail(err)
    if as_json:
        _json({str(k): v for k, v in results.items()})
    else:
        out.print(report.eval_table(results))


def _phase(
    name: str,
    run: str,
    config: Path | None,
    set_: list[str] | None,
    iteration: int | None,
    redo: bool,
    launched_by: str | None = None,
) -> None:
    rd = None
    try:
        rd, conf = open_run(run, config, set_, launched_by=launched_by)
        if rd.ranks.launched:  # one process group for the job; only rank 0 speaks
            loop.check_launched(conf, name, redo)
            ranks.init_group(conf.run.device)
            if rd.follower:
                console.quiet = True
                os.environ["REASONER_PROGRESS"] = "0"
        with rd:
            k = iteration if iteration is not None else loop.current_iteration(rd, conf, name, redo=redo)
            metrics = loop.run_single(rd, conf, k, name, redo_phase=redo)
    except UserError as err:
        if rd is not None:
            _discard_if_empty(rd)
        _fail(err)
    if rd.ranks.main:
        _json(metrics)
    if rd.ranks.launched:
        ranks.leave(0)  # after every rank is done, and without the interpreter's teardown


def _phase_command(phase: recipes.Phase):
    def command(
        run: RunOpt,
        config: ConfigOpt = None,
        set_: SetOpt = None,
        iteration: IterOpt = None,
        redo: RedoOpt = False,
        launched_by: LaunchedOpt = None,
    ) -> None:
        _phase(phase.name, run, config, set_, iteration, redo, launched_by)

    command.__name__ = phase.name
    command.__doc__ = phase.help
    return command


# one command per phase, each reading the previous phase's files (evaluate has its own: --steps, --model)
for _phase_def in recipes.PHASES.values():
    if _phase_def.name != "evaluate":
        app.command(_phase_def.name)(_phase_command(_phase_def))


@app.command()
def evaluate(
    run: Annotated[
        str | None, typer.Option("--run", metavar="RUN", help="Run whose iteration to score (the evaluate phase).")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    iteration: IterOpt = None,
    redo: RedoOpt = False,
    steps: Annotated[
        bool, typer.Option("--steps", help="Score the labellers against gold step labels instead.")
    ] = False,
    problems: Annotated[int, typer.Option(help="--steps: test problems sampled.")] = 100,
    samples: Annotated[int, typer.Option(help="--steps: solutions sampled per problem.")] = 4,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Output folder (--steps: default RUN.steps/iter_K; --model: default evals/NAME)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            metavar="MODEL",
            help="Score a model outside any run: a folder, hub name, smollm2-135m, a run (latest policy) or RUN@K.",
        ),
    ] = None,
    pack: Annotated[
        str | None, typer.Option(help="--model: pack (prompt, steps, verifier); default the run's, else gsm8k.")
    ] = None,
    source: Annotated[str | None, typer.Option(help="--model: the pack's data folder or hub name.")] = None,
    data: Annotated[Path | None, typer.Option(help="--model: your own JSONL file or datasets folder.")] = None,
    question: Annotated[str, typer.Option(help="--data: question field or template, e.g. '{context} {query}'.")] = (
        "question"
    ),
    answer: Annotated[str, typer.Option(help="--data: answer field or template.")] = "answer",
    split: Annotated[str, typer.Option(help="--model: split of the pack's data.")] = "test",
    limit: Annotated[int, typer.Option(help="--model: first N problems only (0: all).")] = 0,
    k: Annotated[int, typer.Option(help="--model: samples per problem for pass@k, maj@k, best-of-k (0: greedy).")] = 0,
    temperature: Annotated[float, typer.Option(help="--model: sampling temperature.")] = 0.8,
    max_new_tokens: Annotated[int, typer.Option(help="--model: token cap (0: the pack's own).")] = 0,
    prompt: Annotated[str | None, typer.Option(help="--model: prompt: fewshot, zeroshot, tools.")] = None,
    reward: Annotated[
        str | None, typer.Option(help="--model: labeller ranking best-of-k: implicit, judge, mc.")
    ] = None,
    reward_model: Annotated[
        str | None, typer.Option(help="--model: the reward's model (implicit PRM or judge; default the run's).")
    ] = None,
    reference: Annotated[str | None, typer.Option(help="--model: the implicit PRM's reference model.")] = None,
    rank: Annotated[str, typer.Option(help="--model: best-of-k rule over step scores: min, last, sum.")] = "min",
    batch_size: Annotated[int, typer.Option(help="--model: rows decoded together.")] = 32,
    device: Annotated[str, typer.Option(help="--model: torch device.")] = "cpu",
    seed: Annotated[int, typer.Option(help="--model: sampling seed.")] = 0,
    chunk: Annotated[int, typer.Option(help="--model: problems per saved chunk (a killed run redoes one).")] = 64,
    stop_loops: Annotated[
        bool | None,
        typer.Option(
            "--stop-loops/--no-stop-loops",
            help="--model: end an answer once it repeats one span 3 times, 48+ tokens (default: the run's"
            " generate.stop_loops; off for a bare model).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Score the iteration's policy on the held-out split (writes eval.json); with --steps, score
    every configured labeller against the pack's gold step correctness (writes steps.json and
    steps.jsonl outside the run, which it only reads; --set then applies to this evaluation
    only, not to the run's later iterations); with --model, score any model on a pack's split
    or your own data outside any run (writes OUT/eval.json, samples.jsonl, prompt.txt; a killed
    evaluation resumes from OUT)."""
    if model is not None:
        from reasoner import benchmark

        req = benchmark.Request(
            model=model,
            pack=pack or "",
            source=source or "",
            data=str(data) if data else "",
            question=question,
            answer=answer,
            split=split,
            limit=limit,
            k=k,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            prompt=prompt or "",
            reward=reward or "",
            reward_model=reward_model or "",
            reference=reference or "",
            rank=rank,
            batch_size=batch_size,
            seed=seed,
            device=device,
            chunk=chunk,
            stop_loops=stop_loops,
        )
        folder = out_dir or Path("evals") / (model.replace("/", "_").replace("@", "_at_").strip("._") or "model")
        try:
            result = benchmark.run(req, folder)
        except UserError as err:
            _fail(err)
        if as_json:
            _json(result)
        else:
            out.print(report.model_eval_table(result))
        console.print(f"wrote {folder / 'eval.json'}, samples.jsonl and prompt.txt", markup=False, highlight=False)
        return
    if run is None:
        _fail(UserError("evaluate needs --run RUN (an iteration of a run) or --model MODEL (any model)"))
    if not steps:
        _phase("evaluate", run, config, set_, iteration, redo)
        return
    try:
        rd, conf = open_run(run, config, set_, record=False)
        kk = iteration if iteration is not None else loop.last_trained(rd, conf)
        result, folder = loop.evaluate_steps(rd, conf, kk, problems, samples, out_dir)
    except UserError as err:
        _fail(err)
    if as_json:
        _json(result)
    else:
        out.print(report.steps_table(result))
    console.print(f"wrote {folder / 'steps.json'} and steps.jsonl", markup=False, highlight=False)


@app.command()
def grade(
    file: Annotated[Path, typer.Argument(help="JSONL with `prediction` and `gold` (and optionally `pack`) per line.")],
    pack: Annotated[str | None, typer.Option(help="Pack whose verifier judges lines that name none.")] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Output JSONL (default: FILE with .graded.jsonl).")
    ] = None,
) -> None:
    """Judge any tool's predictions with this project's verifiers; prints a summary table."""
    try:
        target = out_file or file.with_suffix(".graded.jsonl")
        summary = grading.grade_to(file, target, pack)
    except UserError as err:
        _fail(err)
    out.print(report.grade_table(summary))
    console.print(f"wrote {target}", markup=False, highlight=False)


@app.command()
def runs(
    root: Annotated[Path, typer.Option(help="Folder holding runs.")] = Path("runs"), as_json: JsonOpt = False
) -> None:
    """List runs with each phase's status (a phase whose process died shows as interrupted).
    Reads the runs only."""
    found = list_runs(root)
    if as_json:
        _json(report.runs_status(found))
    else:
        out.print(report.runs_table(found))


@app.command("report")
def report_cmd(
    run: Annotated[
        str | None, typer.Option("--run", metavar="RUN", help="Run folder, or a name under ./runs/.")
    ] = None,
    compare: Annotated[
        list[str] | None,
        typer.Option("--compare", metavar="RUN", help="Overlay several runs in the same figures (repeatable)."),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for report.md and the PNG figures (default RUN.report or compare.report)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Per-iteration evaluation table of a run, and report.md with PNG figures (held-out accuracy
    with error bars, training loss per phase, rewards, step-level F1, B-STaR); with --compare,
    several runs overlaid. Reads the runs only."""
    names = [*([run] if run else []), *(compare or [])]
    if not names:
        _fail(UserError("report needs --run RUN, or --compare RUN --compare RUN ..."))
    try:
        rds = [RunDir(run_path(n)) for n in names]
        for rd in rds:
            rd.saved_config()
        if as_json:
            _json({rd.path.name: report.run_rows(rd) for rd in rds} if len(rds) > 1 else report.run_rows(rds[0]))
        else:
            for rd in rds:
                out.print(report.run_table(rd))
        first = rds[0].path
        folder = out_dir or (first.with_name(first.name + ".report") if len(rds) == 1 else Path("compare.report"))
        md, figures = report.write_report(rds, folder)
    except UserError as err:
        _fail(err)
    made = ", ".join(p.name for p in figures) or "no figures (see report.md)"
    console.print(f"wrote {md} and {made}", markup=False, highlight=False)


if __name__ == "__main__":
    app()
