"""TensorBoard: every metrics line of a run also goes to RUN/tensorboard when `run.report_to`
asks for it ("tensorboard"; "auto": when the tensorboard package is installed), as TRL's
``report_to`` does. metrics.jsonl stays the record; the event files are a view of it.

Tags are ``PHASE/KEY``. A training step's x is the phase's step summed over iterations (the
step axis `reasoner report` draws); a phase's end-of-phase metrics use the iteration.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from reasoner.errors import UserError

CHOICES = ("auto", "tensorboard", "none")


def wanted(report_to: str) -> bool:
    """Whether metrics go to TensorBoard; "tensorboard" without the package is a user error."""
    if report_to not in CHOICES:
        raise UserError(f"run.report_to must be one of {', '.join(CHOICES)}, got {report_to!r}")
    installed = importlib.util.find_spec("tensorboard") is not None
    if report_to == "tensorboard" and not installed:
        raise UserError("run.report_to = 'tensorboard' needs the tensorboard package: pip install tensorboard")
    return report_to != "none" and installed


class Board:
    """A SummaryWriter opened on first use, with each phase's step offset per iteration."""

    def __init__(self, folder: Path, history: list[dict[str, Any]]):
        self.folder = folder
        self._writer = None
        # phase -> {iteration: last step}, from the run's earlier metrics, for the summed step axis
        self._last: dict[str, dict[int, int]] = {}
        for e in history:
            self._note(e)

    def _note(self, e: dict[str, Any]) -> None:
        if "step" in e and e.get("phase") and isinstance(e.get("iteration"), int):
            steps = self._last.setdefault(e["phase"], {})
            steps[e["iteration"]] = max(steps.get(e["iteration"], 0), int(e["step"]))

    def write(self, event: dict[str, Any]) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.folder))
        phase, it = event.get("phase", "run"), event.get("iteration", 0)
        if "step" in event:
            earlier = sum(s for i, s in self._last.get(phase, {}).items() if i < it)
            x = earlier + int(event["step"])
            self._note(event)
        else:
            x = it
        for key, value in event.items():
            if key in ("iteration", "step", "time", "phase", "event") or isinstance(value, bool):
                continue
            if isinstance(value, int | float):
                self._writer.add_scalar(f"{phase}/{key}", value, x, walltime=event.get("time"))
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
