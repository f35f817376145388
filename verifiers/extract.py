"""Answer extractors, named as lm-evaluation-harness names them.

- ``strict``: only an explicit final-answer marker counts (``\\boxed{}``, "The answer is",
  "Answer:" and Markdown's "**Answer:**", "A:", "**Final Answer**").
- ``flexible``: the strict markers first, else the last number in the text (a TeX fraction or
  root counts as one number: ``\\frac{1}{2}`` gives 1/2's TeX, not its denominator).

Models correct themselves, so the last marker in the text wins. A marked answer runs to the end
of its sentence, less a trailing clause ("The answer is 42 units, as computed above" gives
"42 units"). `answer_for` adds what needs the gold's kind: a word answer stated in a sentence
with no marker ("Tom finishes first.") is judged on that last sentence.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from reasoner.registry import Registry

MAX_TEXT = 20_000  # longer outputs are judged on their tail only

_NUMBER = re.compile(r"(?:[-\u2212]?\$?\d[\d,]*(?:\.\d+)?(?:/\d+)?|[-\u2212]?\.\d+)(?:\s?\\?%)?")  # \u2212: −
# A TeX number is one number, not the digits in it: "\frac{1}{2}" is 1/2, not 2.
_TEX_NUMBER = re.compile(r"[-\u2212]?\$?\d*\\(?:[dt]?frac(?:\{[^{}$]+\}\{[^{}$]+\}|\d\d)|sqrt(?:\{[^{}$]+\}|\d))")
_LAST_NUMBER = re.compile(f"{_TEX_NUMBER.pattern}|{_NUMBER.pattern}")
# Markers after which the answer follows; the answer runs to the end of its sentence or line.
_MARKERS = [
    re.compile(r"(?:final answer|the answer)\s*(?:is|=|:)\s*:?\s*", re.I),
    re.compile(r"\*\*final answer\*?\*?\s*:?\**\s*", re.I),
    re.compile(r"(?:^|\n)\s*(?:\*\*|__)?(?:answer|a)\s*(?:\*\*|__)?\s*:\s*(?:\*\*|__)?\s*", re.I),  # **Answer:** 7
    re.compile(r"####\s*"),
]
_SENTENCE_END = re.compile(r"\.(?:\s|$)|\n")
# Words that start a clause after the answer: "42 apples, because ...", "Monday since ...".
_CLAUSE = re.compile(
    r",\s+(?=[A-Za-z])|;\s|\s+(?:as|because|since|which|so|given|when|after|before|if|while|"
    r"that|this|thus|hence|therefore)\b",
    re.I,
)


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


def trim_clause(answer: str) -> str:
    """The answer part of "42 units, as computed above": cut at the first comma, semicolon or
    clause word that lies outside brackets and ``$...$`` (so "(1, 2)" and "\\{a, b\\}" stay whole)."""
    depth, math_mode = 0, False
    dollars_are_math = answer.count("$") - answer.count("\\$") >= 2  # one "$" is money: "$18 per day"
    for i, ch in enumerate(answer):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(depth - 1, 0)
        elif ch == "$" and dollars_are_math and (i == 0 or answer[i - 1] != "\\"):
            math_mode = not math_mode
        elif depth == 0 and not math_mode and i > 0:
            m = _CLAUSE.match(answer, i)
            if m and answer[:i].strip():
                return answer[:i]
    return answer


def strict(text: str) -> str | None:
    text = text[-MAX_TEXT:]
    boxed = last_boxed(text)
    best: tuple[int, str] | None = (text.rfind("\\boxed"), boxed) if boxed is not None else None
    for pattern in _MARKERS:
        for match in pattern.finditer(text):
            if best is None or match.start() > best[0]:
                rest = text[match.end() :]
                end = _SENTENCE_END.search(rest)
                answer = trim_clause(rest[: end.start()] if end else rest)
                if answer.strip():
                    best = (match.start(), answer)
    return _clean(best[1]) if best else None


def flexible(text: str) -> str | None:
    found = strict(text)
    if found:
        return found
    numbers = _LAST_NUMBER.findall(text[-MAX_TEXT:])
    return numbers[-1].rstrip(".,") if numbers else None


_CHOICE = re.compile(r"\(([A-E])\)|\b(?:option|choice)\s*:?\s*\(?([A-E])\b")


def last_sentence(text: str) -> str | None:
    """The last sentence of a text (a line or a period ends one), for a word answer stated in
    prose."""
    parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+|\n", text[-MAX_TEXT:]) if p.strip()]
    return parts[-1].rstrip(".!").strip() if parts else None


def answer_for(extract: Callable[[str], str | None], text: str, gold: str) -> str | None:
    """What ``extract`` finds in ``text``, except that a word gold (Monday, Tom) with no marked
    answer is looked for in the last sentence, where prose states it, not in the last number."""
    from reasoner.verifiers.normalize import choice_letter, is_textual

    found = extract(text)
    if extract is strict:
        return found
    if choice_letter(gold) is not None and strict(text) is None:
        sentence = last_sentence(text) or ""
        letters = [a or b for a, b in _CHOICE.findall(sentence)]
        if letters:  # "The correct option is (B)."
            return f"({letters[-1]})"
    if is_textual(gold) and (found is None or strict(text) is None):
        return last_sentence(text) or found
    return found


EXTRACTORS: Registry[Callable[[str], str | None]] = Registry("extractor")
EXTRACTORS.register("strict")(strict)
EXTRACTORS.register("flexible")(flexible)
get_extractor = EXTRACTORS.lookup
