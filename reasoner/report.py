"""Tables and plots of runs, from the manifest and metrics.jsonl only."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from reasoner.atomic import atomic_write_text
from reasoner.errors import UnknownName
from reasoner.loop import evaluates
from reasoner.recipes import ALL_PHASES as PHASE_ORDER
from reasoner.recipes import phases_of
from reasoner.run import RunDir

# narrow enough for 80 columns
SHORT = {"complete": "done", "running": "running", "pending": "-", "failed": "FAILED", "interrupted": "intr"}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def eval_table(results: dict[int, dict], title: str = "held-out evaluation") -> Table:
    """One row per metric, one column per iteration (iterations are few, metrics many)."""
    table = Table(title=title)
    keys = sorted({k for m in results.values() for k in m if k != "seconds"})
    table.add_column("metric", overflow="fold")
    for it in sorted(results):
        table.add_column(f"iter {it}", justify="right")
    for k in keys:
        table.add_row(k, *(_fmt(results[it].get(k)) for it in sorted(results)))
    return table


def runs_status(runs: list[RunDir]) -> list[dict[str, Any]]:
    """Each run's writer (None when no live process holds its lock) and each phase's status as a
    user should read it (``running`` only while a live writer holds the run; ``interrupted``
    when its process died; ``failed`` with the error). Reads the runs only."""
    listing = []
    for rd in runs:
        writer = rd.writer()
        saved = rd.saved_config()
        recipe = saved.run.recipe + ("+balance" if saved.balance.enabled else "")
        try:
            order = [p.name for p in phases_of(saved)]
        except UnknownName:  # a recipe this version does not know: list what the manifest has
            order, recipe = list(PHASE_ORDER), f"{recipe}?"
        iterations = {}
        for it, phases in sorted(rd.manifest().get("iterations", {}).items(), key=lambda kv: int(kv[0])):
            iterations[it] = {
                p: {"status": rd.status(int(it), p, writer), **({"error": e} if (e := phases[p].get("error")) else {})}
                for p in order
                if p in phases
            }
        listing.append(
            {
                "run": rd.path.name,
                "path": str(rd.path),
                "recipe": recipe,
                "phases": order,
                # iterations after which `iterate` evaluates (evaluate.every skips the others)
                "evaluated": [k for k in range(1, saved.run.iterations + 1) if evaluates(saved, k)],
                "writer": writer.__dict__ if writer else None,
                "iterations": iterations,
            }
        )
    return listing


def runs_table(runs: list[RunDir]) -> Table:
    """One row per run and iteration, one column per phase that any listed run's recipe has
    (a column for every phase would not fit a terminal)."""
    table = Table(title="runs (done / running / intr: interrupted / FAILED / - pending)")
    entries = runs_status(runs)
    columns = [p for p in PHASE_ORDER if any(p in e["phases"] for e in entries)]
    table.add_column("run", overflow="fold", min_width=8)
    table.add_column("iter")
    for col in columns:
        table.add_column(col)
    errors = []
    for entry in entries:
        name, iterations, order = entry["run"], entry["iterations"], entry["phases"]
        label = Text(f"{name} ({entry['recipe']})")
        if not iterations:
            table.add_row(label, "-", *["-" if p in order else "" for p in columns])
        for it, phases in iterations.items():
            # blank: not a phase of this run's recipe or of this iteration (iteration 0 only
            # evaluates; evaluate.every skips some evaluations)
            due = [p for p in order if it != "0" and (p != "evaluate" or int(it) in entry["evaluated"])]
            cells = [SHORT[phases[p]["status"]] if p in phases else ("-" if p in due else "") for p in columns]
            table.add_row(label, it, *cells)
            errors += [f"{name} iter {it} {p}: {v['error']}" for p, v in phases.items() if v.get("error")]
    if errors:
        table.caption = Text("\n".join(errors))
    return table


def run_rows(rd: RunDir) -> dict[int, dict[str, Any]]:
    rows = {}
    for it, phases in rd.manifest().get("iterations", {}).items():
        rows[int(it)] = {
            **{f"train_{k}": v for k, v in phases.get("train", {}).get("metrics", {}).items() if k != "seconds"},
            **{f"verify_{k}": v for k, v in phases.get("verify", {}).get("metrics", {}).items() if k != "seconds"},
            **phases.get("evaluate", {}).get("metrics", {}),
        }
    return dict(sorted(rows.items()))


def run_table(rd: RunDir) -> Table:
    return eval_table(run_rows(rd), title=f"run {rd.path.name}")


@dataclass
class RunSeries:
    """What the figures of one run show, read from its metrics.jsonl and step evaluations."""

    name: str
    evals: dict[int, dict[str, float]] = field(default_factory=dict)  # iteration -> metrics
    losses: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # phase -> (step, loss)
    rewards: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    step_f1: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    balance: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    @staticmethod
    def sampled_key(key: str) -> bool:
        """Sampled figures (maj@k, sampled_pass@k; an old run's pass@k for k > 1)."""
        if key.endswith("_stderr"):
            return False
        return key.startswith(("maj@", "sampled_pass@")) or (key.startswith("pass@") and key != "pass@1")


BALANCE_KEYS = ("balance", "pass_at_k", "exploitation", "next_temperature")


FLOOR = "floor (every step called wrong)"  # step_f1's series of `every_step_wrong` (reasoner.stepeval)


def run_series(rd: RunDir) -> RunSeries:
    r = RunSeries(rd.path.name)
    offsets: dict[str, float] = {}
    last: dict[str, tuple[int, float]] = {}  # phase -> (iteration, last global step)
    for e in rd.metrics():
        phase, it = e.get("phase"), e.get("iteration")
        if e.get("event") == "phase_complete":
            if phase == "evaluate" and "pass@1" in e:
                r.evals[it] = {k: v for k, v in e.items() if k.startswith(("pass@", "maj@", "sampled_pass@"))}
            elif phase == "verify" and "accuracy" in e:
                r.rewards.setdefault("verifier accuracy", []).append((it, e["accuracy"]))
            elif phase == "label":
                for k, v in e.items():
                    if k.endswith("_mean"):
                        r.rewards.setdefault(f"{k[:-5]} mean step reward", []).append((it, v))
                    elif "_pair_accuracy_" in k:
                        name, rule = k.split("_pair_accuracy_")
                        r.rewards.setdefault(f"{name} pair accuracy ({rule})", []).append((it, v))
            elif phase == "balance":
                for k in BALANCE_KEYS:
                    if isinstance(e.get(k), int | float):
                        r.balance.setdefault(k, []).append((it, e[k]))
        elif "loss" in e and "step" in e and phase:
            prev = last.get(phase)
            if prev is not None and prev[0] != it:
                offsets[phase] = prev[1]  # a new iteration continues the phase's step axis
            x = offsets.get(phase, 0.0) + e["step"]
            last[phase] = (it, x)
            r.losses.setdefault(phase, []).append((x, float(e["loss"])))
    steps_root = rd.path.with_name(rd.path.name + ".steps")
    for f in sorted(steps_root.glob("iter_*/steps.json")):
        data = json.loads(f.read_text())
        floor = {FLOOR: data["every_step_wrong"]} if "every_step_wrong" in data else {}
        for name, m in {**data.get("labellers", {}), **floor}.items():
            r.step_f1.setdefault(name, []).append((int(data["iteration"]), m["f1"]))
    return r


FIGURES = {
    "accuracy.png": (
        "accuracy",
        "held-out greedy pass@1 per iteration with standard-error bars; sampled pass@k and maj@k dashed where measured",
    ),  # fmt: skip
    "loss.png": ("loss", "training loss of each phase (train, reward, judge, prime) against its step"),
    "rewards.png": (
        "rewards",
        "share of rollouts the verifier accepts, each labeller's mean step reward and how often it puts a"
        " problem's correct sample above its incorrect ones (pair accuracy; 0.5 is a coin)",
    ),
    "step_f1.png": ("step_f1", "first-error F1 of each labeller against gold steps (`reasoner evaluate --steps`)"),
    "bstar.png": ("bstar", "B-STaR: balance score, exploration (pass@k), exploitation and the next temperature"),
}


def _has(r: RunSeries, fig: str) -> bool:
    return bool({"accuracy": r.evals, "loss": r.losses, "rewards": r.rewards, "step_f1": r.step_f1,
                 "bstar": r.balance}[fig])  # fmt: skip


def write_report(rds: list[RunDir], folder: Path) -> tuple[Path, list[Path]]:
    """report.md and a PNG per figure with data (several runs: overlaid). Without matplotlib the
    markdown is still written and says how to get the figures."""
    from reasoner import plots

    runs = [run_series(rd) for rd in rds]
    folder.mkdir(parents=True, exist_ok=True)
    drawn: list[Path] = []
    can_draw = plots.available()
    lines = [f"# reasoner report: {', '.join(r.name for r in runs)}", ""]
    lines += _accuracy_markdown(runs)
    lines += ["## Figures", ""]
    for filename, (fn, what) in FIGURES.items():
        shown = [r for r in runs if _has(r, fn)]
        if not shown:
            lines.append(f"- {filename}: not drawn (no {fn.replace('_', ' ')} data in these runs)")
            continue
        summary = _figure_summary(fn, shown)
        if can_draw:
            drawn.append(getattr(plots, fn)(shown, folder / filename))
            lines.append(f"- [{filename}]({filename}): {what}. {summary}")
        else:
            lines.append(f"- {filename}: {what}. {summary}")
    if not can_draw:
        lines += ["", 'PNG figures need matplotlib: `pip install -e ".[report]"` (or `pip install matplotlib`).']
    md = folder / "report.md"
    atomic_write_text(md, "\n".join(lines) + "\n")
    return md, drawn


def _accuracy_markdown(runs: list[RunSeries]) -> list[str]:
    lines = ["## Held-out accuracy (greedy pass@1 ± standard error)", ""]
    its = sorted({i for r in runs for i in r.evals})
    if not its:
        return [*lines, "No evaluation yet.", ""]
    lines.append("| run | " + " | ".join(f"iter {i}" for i in its) + " |")
    lines.append("|---|" + "---:|" * len(its))
    for r in runs:
        cells = [
            f"{100 * r.evals[i]['pass@1']:.1f}% ± {100 * r.evals[i].get('pass@1_stderr', 0):.1f}"
            if i in r.evals
            else ""
            for i in its
        ]
        lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _figure_summary(fig: str, runs: list[RunSeries]) -> str:
    """One sentence per run of what the figure shows, for a reader without a display."""
    parts = []
    for r in runs:
        if fig == "accuracy":
            its = sorted(r.evals)
            a, b = r.evals[its[0]]["pass@1"], r.evals[its[-1]]["pass@1"]
            parts.append(f"{r.name}: greedy pass@1 {100 * a:.1f}% (iter {its[0]}) -> {100 * b:.1f}% (iter {its[-1]})")
        elif fig == "loss":
            parts += [f"{r.name} {p}: {pts[0][1]:.3f} -> {pts[-1][1]:.3f} over {len(pts)} steps"
                      for p, pts in sorted(r.losses.items())]  # fmt: skip
        else:
            data = {"rewards": r.rewards, "step_f1": r.step_f1, "bstar": r.balance}[fig]
            parts += [f"{r.name} {k}: " + ", ".join(f"{v:.3f} (iter {i})" for i, v in pts)
                      for k, pts in sorted(data.items())]  # fmt: skip
    return "; ".join(parts) + "."


def grade_table(counts) -> Table:
    table = Table(title="verdicts")
    for col in ["pack", "correct", "incorrect", "unverifiable", "accuracy"]:
        table.add_column(col)
    for pack in sorted({p for p, _ in counts}):
        c, i, u = (counts[(pack, s)] for s in ("correct", "incorrect", "unverifiable"))
        table.add_row(pack, str(c), str(i), str(u), f"{c / max(c + i + u, 1):.4f}")
    return table


def steps_table(result: dict) -> Table:
    title = f"step-level evaluation ({result['solutions']} solutions, {result['steps']} steps"
    floor = result.get("every_step_wrong")  # absent from results written before it was added
    if floor is not None:
        title += f"; {floor['uncheckable']} without a step the gold can check; floor: every step called wrong"
    table = Table(title=title + ")")
    for col in ["labeller", "threshold", "step accuracy", "first-error F1", "error acc", "correct acc"]:
        table.add_column(col)
    rows = [(name, f"{r['threshold']:g}", f"{r['step_accuracy']:.4f}", r) for name, r in result["labellers"].items()]
    if floor is not None:
        rows.append(("floor", "", "", floor))
    for name, threshold, step_acc, r in rows:
        table.add_row(name, threshold, step_acc, f"{r['f1']:.4f}", f"{r['error_acc']:.4f}", f"{r['correct_acc']:.4f}")
    return table


def model_eval_table(result: dict[str, Any]) -> Table:
    """`reasoner evaluate --model`: the headline figures, then per-level / per-subject rows."""
    title = f"{result['model']} on {result['pack']} ({result['problems']} problems, {result['prompt_style']} prompt)"
    table = Table(title=title)
    table.add_column("metric", overflow="fold")
    table.add_column("value", justify="right")
    table.add_column("n", justify="right")
    n = str(result["problems"])
    table.add_row("greedy accuracy", f"{100 * result['greedy_accuracy']:.1f}% ± {100 * result['greedy_stderr']:.1f}", n)
    for key in sorted(k for k in result if k.startswith(("sampled_pass@", "maj@"))):
        table.add_row(key.replace("_", " "), f"{100 * result[key]:.1f}%", n)
    for key, best in result.items():
        if key.startswith("best_of_"):
            table.add_row(
                f"{key.replace('_', ' ')} ({best['reward']}, {best['rank']})", f"{100 * best['accuracy']:.1f}%", n
            )
    table.add_row("answers cut by the token cap", f"{100 * result['cut_by_token_cap']:.1f}%", n)
    if result.get("stopped_in_loop"):  # generate.stop_loops
        table.add_row("answers stopped in a loop", f"{100 * result['stopped_in_loop']:.1f}%", n)
    for group in ("by_level", "by_subject"):
        for name, g in result.get(group, {}).items():
            label = f"level {name}" if group == "by_level" else name
            table.add_row(f"  {label}", f"{100 * g['mean']:.1f}% ± {100 * g['stderr']:.1f}", str(g["n"]))
    return table
