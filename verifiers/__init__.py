"""Answer extraction and equivalence, installed as `reasoner.verifiers`.

A verifier never raises on model output: it returns a `Verdict` (correct, incorrect or
unverifiable, with a reason). Extractors and verifiers are registered by name so that a task
pack names the ones it uses.
"""

from __future__ import annotations

from collections.abc import Callable

from reasoner.registry import Registry
from reasoner.verifiers.extract import EXTRACTORS, get_extractor
from reasoner.verifiers.verdict import Verdict

VERIFIERS: Registry[Callable[[str, str | None], Verdict]] = Registry("verifier")
register = VERIFIERS.register
get_verifier = VERIFIERS.lookup


from reasoner.verifiers import registered as _registered  # noqa: E402,F401  (registers verifiers)

__all__ = ["EXTRACTORS", "VERIFIERS", "Verdict", "get_extractor", "get_verifier", "register"]
