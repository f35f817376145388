"""The trainer: engines by role, one objective, one step at a time.

An objective names the roles it updates (``objective.roles``: ``("policy",)``, ``("reward",)``,
or several, as PRIME RL updates the implicit PRM and the policy from one batch). A step runs
each role's update in that order on the same batch, through `objective.for_role(role)` when
the objective updates more than one, after ``objective.prepare(role, batch, engines)`` where the
objective has it; each engine normalises and steps its own optimizer. The
trainer saves and restores every engine's state together, so a resumed multi-role step equals
an uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reasoner.training.engine import Engine, Objective


class Trainer:
    def __init__(self, engines: dict[str, Engine], objective: Objective):
        roles = tuple(getattr(objective, "roles", ("policy",)))
        missing = [r for r in roles if r not in engines]
        if missing:
            raise ValueError(f"objective {getattr(objective, 'name', objective)} updates {missing} but has no engine")
        self.engines, self.objective, self.roles = engines, objective, roles

    @property
    def step(self) -> int:
        return self.engines[self.roles[0]].step

    def train_step(self, batch: list[Any]) -> dict[str, float]:
        if len(self.roles) == 1:
            return self.engines[self.roles[0]].train_step(batch, self.objective)
        metrics: dict[str, float] = {}
        prepare = getattr(self.objective, "prepare", None)
        for role in self.roles:
            # an objective may rebuild the batch between roles (PRIME: process rewards from the
            # reward model just updated become the policy's advantages)
            data = prepare(role, batch, self.engines) if prepare is not None else batch
            got = self.engines[role].train_step(data, self.objective.for_role(role))
            metrics.update({f"{role}/{k}": v for k, v in got.items()})
        metrics["loss"] = sum(metrics[f"{r}/loss"] for r in self.roles)
        return metrics

    def save_state(self, folder: Path) -> None:
        for role in self.roles:
            (folder / role).mkdir(parents=True, exist_ok=True)
            self.engines[role].save_state(folder / role)

    def load_state(self, folder: Path) -> None:
        for role in self.roles:
            self.engines[role].load_state(folder / role)
