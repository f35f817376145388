"""Answer extraction and equivalence, installed as `reasoner.verifiers`.

A verifier never raises on model output: it returns a `Verdict` (correct, incorrect or
unverifiable, with a reason). Extractors and verifiers are registered by name so that a task
pack names the ones it uses.
"""

from __future__ import annotations

from collections.abc import Callable

from reasoner.verifiers.extract import EXTRACTORS, get_extractor
from reasoner.verifiers.verdict import Verdict

VERIFIERS: dict[str, Callable[[str, str], Verdict]] = {}


def register(name: str):
    def deco(fn):
        if name in VERIFIERS and VERIFIERS[name] is not fn:
            raise ValueError(f"verifier {name!r} is already registered")
        VERIFIERS[name] = fn
        return fn

    return deco


def get_verifier(name: str) -> Callable[[str, str], Verdict]:
    if name not in VERIFIERS:
        raise KeyError(f"unknown verifier {name!r}; valid: {', '.join(sorted(VERIFIERS))}")
    return VERIFIERS[name]


from reasoner.verifiers import registered as _registered  # noqa: E402,F401  (registers verifiers)

__all__ = ["EXTRACTORS", "VERIFIERS", "Verdict", "get_extractor", "get_verifier", "register"]
