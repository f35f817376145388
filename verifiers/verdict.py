from __future__ import annotations

from dataclasses import dataclass

CORRECT, INCORRECT, UNVERIFIABLE = "correct", "incorrect", "unverifiable"


@dataclass(frozen=True)
class Verdict:
    status: str  # correct | incorrect | unverifiable
    reason: str = ""

    @property
    def correct(self) -> bool:
        return self.status == CORRECT
