"""Answer extractors, named as lm-evaluation-harness names them.

- ``strict``: only an explicit final-answer marker counts (``\\boxed{}``, "The answer is",
  "Answer:", "A:", "**Final Answer**").
- ``flexible``: the strict markers first, else the last number in the text.

Models correct themselves, so the last marker in the text wins.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from reasoner.registry import Registry

MAX_TEXT = 20_000  # longer outputs are judged on their tail only

_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
# Markers after which the answer follows; the answer runs to the end of its sentence or line.
_MARKERS = [
    re.compile(r"(?:final answer|the answer)\s*(?:is|=|:)\s*:?\s*", re.I),
    re.compile(r"\*\*final answer\*?\*?\s*:?\**\s*", re.I),
    re.compile(r"(?:^|\n)\s*(?:answer|a)\s*:\s*", re.I),
    re.compile(r"####\s*"),
]
_SENTENCE_END = re.compile(r"\.(?:\s|$)|\n")


def last_boxed(text: str) -> str | None:
    """Content of the last balanced ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces kept."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    while start >= 0:
        brace = text.find("{", start)
        if brace < 0:
            break
        depth = 0
        for i in range(brace, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[brace + 1 : i]
        start = max(text.rfind("\\boxed", 0, start), text.rfind("\\fbox", 0, start))
    return None


def _clean(answer: str) -> str:
    answer = answer.strip()
    boxed = last_boxed(answer)
    if boxed is not None:
        return boxed.strip()
    answer = re.sub(r"^\$+|\$+$", "", answer).strip()
    return answer.rstrip(".").strip().strip("*").strip()


def strict(text: str) -> str | None:
    text = text[-MAX_TEXT:]
    boxed = last_boxed(text)
    best: tuple[int, str] | None = (text.rfind("\\boxed"), boxed) if boxed is not None else None
    for pattern in _MARKERS:
        for match in pattern.finditer(text):
            if best is None or match.start() > best[0]:
                rest = text[match.end() :]
                end = _SENTENCE_END.search(rest)
                answer = rest[: end.start()] if end else rest
                if answer.strip():
                    best = (match.start(), answer)
    return _clean(best[1]) if best else None


def flexible(text: str) -> str | None:
    found = strict(text)
    if found:
        return found
    numbers = _NUMBER.findall(text[-MAX_TEXT:])
    return numbers[-1].rstrip(".,") if numbers else None


EXTRACTORS: Registry[Callable[[str], str | None]] = Registry("extractor")
EXTRACTORS.register("strict")(strict)
EXTRACTORS.register("flexible")(flexible)
get_extractor = EXTRACTORS.lookup
