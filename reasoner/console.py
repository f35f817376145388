"""Progress bars with ETA (rich) for long phases. When the output is not a terminal (a log
file, CI) a plain line is written instead every ``LOG_EVERY`` seconds and at the end;
REASONER_PROGRESS=1 forces the bar, REASONER_PROGRESS=0 silences both."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)  # progress, logs and errors
# results (tables, JSON): stdout, so they can be piped. Piped into a file or a pager a table is
# as wide as its content (up to 200 columns) instead of rich's 80, which cut `reasoner runs`'
# phase columns to "gen…"; $COLUMNS still decides where it is set.
out = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200)
LOG_EVERY = 30.0


@contextmanager
def progress(description: str, total: int, start: int = 0) -> Iterator[Callable[[int], None]]:
    """Yield ``update(completed)``; shows a bar with elapsed time and ETA. ``start``: the work
    already done before this process (a resumed phase's saved step), which the ETA's rate leaves out."""
    mode = os.environ.get("REASONER_PROGRESS")
    if mode == "0":
        yield lambda completed: None
        return
    if not (sys.stderr.isatty() or mode == "1"):
        with _log_lines(description, total, start) as update:
            yield update
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total, completed=start)  # rich's speed counts updates only
        yield lambda completed: bar.update(task, completed=completed)


def say(message: str) -> None:
    console.print(message, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def _log_lines(description: str, total: int, start: int) -> Iterator[Callable[[int], None]]:
    began = last = time.monotonic()
    done = start

    def line(completed: int) -> str:
        elapsed = time.monotonic() - began
        since = completed - start  # the rate counts only the work done in this process
        if completed >= total:
            eta = "done"
        elif since > 0:
            eta = f"eta {elapsed / since * (total - completed):.0f}s"
        else:
            eta = "eta unknown"
        return f"{description}: {completed}/{total} ({completed / max(total, 1):.0%}), {elapsed:.0f}s, {eta}"

    def update(completed: int) -> None:
        nonlocal last, done
        done = completed
        now = time.monotonic()
        if now - last >= LOG_EVERY and completed < total:
            last = now
            print(line(completed), file=sys.stderr, flush=True)

    yield update
    print(line(done), file=sys.stderr, flush=True)
