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
out = Console()  # results (tables, JSON): stdout, so they can be piped
LOG_EVERY = 30.0


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """Yield ``update(completed)``; shows a bar with elapsed time and ETA."""
    mode = os.environ.get("REASONER_PROGRESS")
    if mode == "0":
        yield lambda completed: None
        return
    if not (sys.stderr.isatty() or mode == "1"):
        with _log_lines(description, total) as update:
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
        task = bar.add_task(description, total=total)
        first = True

        def update(completed: int) -> None:
            nonlocal first
            if first:  # a resumed phase starts at its saved step: not work done in no time
                bar.reset(task, total=total, completed=completed)
                first = False
            else:
                bar.update(task, completed=completed)

        yield update


def say(message: str) -> None:
    console.print(message, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def _log_lines(description: str, total: int) -> Iterator[Callable[[int], None]]:
    start = last = time.monotonic()
    done = 0
    base: int | None = None  # the first count reported: a resumed phase's saved step

    def line(completed: int) -> str:
        elapsed = time.monotonic() - start
        since = completed - (base or 0)  # the rate counts only the work done in this process
        if completed >= total:
            eta = "done"
        elif since > 0:
            eta = f"eta {elapsed / since * (total - completed):.0f}s"
        else:
            eta = "eta unknown"
        return f"{description}: {completed}/{total} ({completed / max(total, 1):.0%}), {elapsed:.0f}s, {eta}"

    def update(completed: int) -> None:
        nonlocal last, done, base
        if base is None:
            base = completed
        done = completed
        now = time.monotonic()
        if now - last >= LOG_EVERY and completed < total:
            last = now
            print(line(completed), file=sys.stderr, flush=True)

    yield update
    print(line(done), file=sys.stderr, flush=True)
