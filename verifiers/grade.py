"""Grade a JSONL file of predictions: the code behind `reasoner grade`.

Each line needs ``prediction`` and ``gold`` (text) and may name its ``pack``; every line is
written back with ``answer`` (what was judged), ``verdict`` and ``reason`` added.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reasoner.records import RecordError, iter_objects
from reasoner.verifiers import get_verifier
from reasoner.verifiers.extract import answer_for, flexible, strict
from reasoner.verifiers.normalize import hedged

SHORT_WORDS = 3  # a one-line prediction of at most this many words is the answer itself


def answer_of(prediction: str, gold: str = "") -> str | None:
    """The answer inside a prediction, found the way the loop finds it: a marked answer if there
    is one; a bare answer ("9 apples", "x \\in [1,2]", "12 or 13") as it stands; in a sentence
    or a longer text, the last number (or, for a word gold, the last sentence)."""
    marked = strict(prediction)
    if marked is not None:
        return marked
    text = prediction.strip()
    if "\n" not in text and (len(text.split()) <= SHORT_WORDS or hedged(text)):
        return text
    return answer_for(flexible, prediction, gold)


def gold_text(value: Any) -> str | None:
    """A gold answer as text: numbers stored as numbers (3, 145.0) are accepted as written, a
    boolean (StrategyQA's ``"answer": true``) as True or False, which yes and no match."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return value if isinstance(value, str) else None


def read_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, row in iter_objects(path):
        if not isinstance(row.get("prediction"), str):
            raise RecordError(path, number, "prediction", "missing or not text")
        if gold_text(row.get("gold")) is None:
            raise RecordError(path, number, "gold", "missing or not text or a number")
        if "pack" in row and not isinstance(row["pack"], str):
            raise RecordError(path, number, "pack", "must be text")
        yield number, row


def grade_file(path: Path, default_pack: str | None, verifier_of) -> tuple[list[dict], Counter]:
    """Return the graded rows and a Counter of (pack, verdict). ``verifier_of(pack)`` names the
    verifier for a pack. The whole input is validated before anything is judged."""
    rows = list(read_lines(path))
    graded, counts = [], Counter()
    for _, row in rows:
        pack = row.get("pack") or default_pack or ""
        verify = get_verifier(verifier_of(pack))
        gold = gold_text(row["gold"])
        answer = answer_of(row["prediction"], gold)
        verdict = verify(gold, answer)
        graded.append({**row, "answer": answer, "verdict": verdict.status, "reason": verdict.reason})
        counts[(pack or "-", verdict.status)] += 1
    return graded, counts
