"""Progress bars with ETA (rich) for long phases; quiet when the output is not a terminal
unless REASONER_PROGRESS=1."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """Yield ``update(completed)``; shows a bar with elapsed time and ETA."""
    show = sys.stderr.isatty() or os.environ.get("REASONER_PROGRESS") == "1"
    if not show:
        yield lambda completed: None
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
        yield lambda completed: bar.update(task, completed=completed)


def say(message: str) -> None:
    console.print(message)
