"""PNG figures of one run or several overlaid, drawn with matplotlib's Agg backend (no display).

Input is `reasoner.report.RunSeries`, read from a run's metrics.jsonl and its step-level
evaluations; every figure has axes, labels and a legend naming the runs. matplotlib is an
optional extra (``pip install -e ".[report]"``); `available()` says whether it is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

WIDTH, HEIGHT, DPI = 6.4, 4.0, 100  # 640 x 400 pixels


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(title: str, xlabel: str, ylabel: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT), dpi=DPI)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if xlabel == "iteration":  # iterations are whole numbers: no tick at 1.25
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, ax


def _save(fig, ax, path: Path) -> Path:
    import matplotlib.pyplot as plt

    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def accuracy(runs: list[Any], path: Path) -> Path:
    """Held-out greedy pass@1 per iteration with standard-error bars; sampled pass@k and maj@k
    dashed where measured."""
    fig, ax = _figure("held-out accuracy", "iteration", "accuracy (%)")
    for r in runs:
        its = sorted(r.evals)
        if not its:
            continue
        ys = [100 * r.evals[i]["pass@1"] for i in its]
        errs = [100 * r.evals[i].get("pass@1_stderr", 0.0) for i in its]
        ax.errorbar(its, ys, yerr=errs, marker="o", capsize=3, label=f"{r.name}: greedy pass@1")
        for key in sorted({k for i in its for k in r.evals[i] if r.sampled_key(k)}):
            pts = [(i, 100 * r.evals[i][key]) for i in its if key in r.evals[i]]
            ax.plot(*zip(*pts, strict=True), linestyle="--", marker=".", label=f"{r.name}: {key}")
    ax.set_xticks(sorted({i for r in runs for i in r.evals}))
    return _save(fig, ax, path)


def loss(runs: list[Any], path: Path) -> Path:
    """Training loss per phase (train, reward, judge, prime) against the phase's global step."""
    fig, ax = _figure("training loss", "step (summed over iterations)", "loss")
    for r in runs:
        for phase, pts in sorted(r.losses.items()):
            ax.plot(*zip(*pts, strict=True), label=f"{r.name}: {phase}")
    return _save(fig, ax, path)


def rewards(runs: list[Any], path: Path) -> Path:
    """Per iteration: the share of rollouts the verifier accepts, each labeller's mean step
    reward and its pair accuracy against the verifier."""
    fig, ax = _figure("rewards of the rollouts", "iteration", "value")
    for r in runs:
        for key, pts in sorted(r.rewards.items()):
            ax.plot(*zip(*pts, strict=True), marker="o", label=f"{r.name}: {key}")
    return _save(fig, ax, path)


def step_f1(runs: list[Any], path: Path) -> Path:
    """First-error F1 of each labeller against gold steps, per evaluated iteration."""
    fig, ax = _figure("step-level first-error F1", "iteration", "F1")
    for r in runs:
        for name, pts in sorted(r.step_f1.items()):
            ax.plot(*zip(*pts, strict=True), marker="s", label=f"{r.name}: {name}")
    ax.set_ylim(0, 1)
    return _save(fig, ax, path)


def bstar(runs: list[Any], path: Path) -> Path:
    """B-STaR: the balance score, exploration (pass@k) and exploitation of the chosen setting,
    and the temperature chosen for the next iteration."""
    fig, ax = _figure("B-STaR balance", "iteration", "value")
    for r in runs:
        for key, pts in sorted(r.balance.items()):
            ax.plot(*zip(*pts, strict=True), marker="o", label=f"{r.name}: {key}")
    return _save(fig, ax, path)
