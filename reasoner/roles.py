"""Models addressed by role and iteration: ``policy@k``, ``reward@k``, ``judge@k``, ``reference``.

``ROLE@k`` is the model of that role after iteration ``k`` (``@0``: before any training). It is
resolved from the manifest: the artefact recorded by the last complete phase, at an iteration
``<= k``, of the recipe's phase that trains the role; a complete phase that recorded no artefact
(it skipped, e.g. no implicit labeller) passes to the one before; with none, the role's starting
spec from the config. A phase that should have trained it but has not completed is an error,
never a silent fall-back. Nothing here scans folders.
"""

from __future__ import annotations

from reasoner.config import Config
from reasoner.run import COMPLETE, RunDir, RunError


class Roles:
    def __init__(self, run: RunDir, config: Config, producers: dict[str, str]):
        """``producers`` maps a role to the recipe's phase that trains it (``policy`` -> ``train``)."""
        self.run, self.config, self.producers = run, config, producers

    def start(self, role: str) -> str:
        """The role's model before any training."""
        m, lab = self.config.model, self.config.label
        if role == "reward":
            return lab.reward_model or m.policy
        if role == "judge":
            return lab.judge_model or self.spec("policy", 0)
        return m.policy  # policy and reference

    def spec(self, role: str, k: int) -> str:
        """The model spec of ``role@k``: a run folder path or the configured start."""
        if role == "reference":
            return self.start(role)
        phase = self.producers.get(role)
        for j in range(k, 0, -1) if phase else ():
            entry = self.run.phase(j, phase)
            if entry.get("status") != COMPLETE:
                raise RunError(f"{role}@{j} is not ready: {phase} of iteration {j} has not completed")
            made = [a for a in entry.get("artefacts", []) if a.rsplit("/", 1)[-1] == role] or entry.get("artefacts")
            if made:  # the artefact named after the role (a phase may train several), else its only one
                return str(self.run.path / made[0])
        if role == "judge" and not self.config.label.judge_model:
            return self.spec("policy", k)  # an untrained judge is the iteration's policy
        return self.start(role)
