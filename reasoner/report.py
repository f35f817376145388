"""Tables and plots of runs, from the manifest and metrics.jsonl only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from reasoner.errors import UnknownName
from reasoner.recipes import ALL_PHASES as PHASE_ORDER
from reasoner.recipes import phases_of
from reasoner.run import RunDir, atomic_write_text

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
            # blank: not a phase of this run's recipe (or iteration 0, which only evaluates)
            todo = "-" if it != "0" else ""
            cells = [SHORT[phases[p]["status"]] if p in phases else (todo if p in order else "") for p in columns]
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


def series(rd: RunDir) -> dict[str, list[tuple[float, float]]]:
    """Plottable series: pass@1 by iteration and training loss by global step."""
    evals, loss = [], []
    offset, last_iter = 0, None
    for e in rd.metrics():
        if e.get("phase") == "evaluate" and e.get("event") == "phase_complete" and "pass@1" in e:
            evals.append((float(e["iteration"]), float(e["pass@1"])))
        if e.get("phase") == "train" and "loss" in e and "step" in e:
            if e["iteration"] != last_iter:
                offset, last_iter = (loss[-1][0] if loss else 0), e["iteration"]
            loss.append((offset + e["step"], float(e["loss"])))
    return {"pass@1": evals, "train loss": loss}


def write_svg(rd: RunDir, path: Path, width: int = 420, height: int = 220) -> None:
    """Two small line charts side by side, as a dependency-free SVG."""
    charts = []
    for n, (name, points) in enumerate(series(rd).items()):
        x0 = n * (width + 20)
        charts.append(f'<text x="{x0 + 10}" y="16" font-size="13">{name}</text>')
        charts.append(f'<rect x="{x0}" y="24" width="{width}" height="{height}" fill="none" stroke="#999"/>')
        if len(points) >= 1:
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            xmin, xmax = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
            ymin, ymax = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
            pts = " ".join(
                f"{x0 + 10 + (x - xmin) / (xmax - xmin) * (width - 20):.1f},"
                f"{24 + height - 10 - (y - ymin) / (ymax - ymin) * (height - 20):.1f}"
                for x, y in points
            )
            charts.append(f'<polyline points="{pts}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
            charts.append(f'<text x="{x0 + 10}" y="{height + 40}" font-size="11">min {ymin:.3f}  max {ymax:.3f}</text>')
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * width + 30}" height="{height + 50}">'
        + "".join(charts)
        + "</svg>\n"
    )
    atomic_write_text(path, svg)


def grade_table(counts) -> Table:
    table = Table(title="verdicts")
    for col in ["pack", "correct", "incorrect", "unverifiable", "accuracy"]:
        table.add_column(col)
    for pack in sorted({p for p, _ in counts}):
        c, i, u = (counts[(pack, s)] for s in ("correct", "incorrect", "unverifiable"))
        table.add_row(pack, str(c), str(i), str(u), f"{c / max(c + i + u, 1):.4f}")
    return table


def steps_table(result: dict) -> Table:
    table = Table(title=f"step-level evaluation ({result['solutions']} solutions, {result['steps']} steps)")
    for col in ["labeller", "threshold", "step accuracy", "first-error F1", "error acc", "correct acc"]:
        table.add_column(col)
    for name, r in result["labellers"].items():
        table.add_row(
            name,
            f"{r['threshold']:g}",
            f"{r['step_accuracy']:.4f}",
            f"{r['f1']:.4f}",
            f"{r['error_acc']:.4f}",
            f"{r['correct_acc']:.4f}",
        )
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
    for group in ("by_level", "by_subject"):
        for name, g in result.get(group, {}).items():
            label = f"level {name}" if group == "by_level" else name
            table.add_row(f"  {label}", f"{100 * g['mean']:.1f}% ± {100 * g['stderr']:.1f}", str(g["n"]))
    return table
