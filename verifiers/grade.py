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
from reasoner.verifiers.extract import flexible, strict

SHORT = 120  # a prediction this short on one line is taken as the answer itself


def answer_of(prediction: str) -> str | None:
    """The answer inside a prediction: a marked answer if there is one, the text itself when it
    is short, else the last number."""
    marked = strict(prediction)
    if marked is not None:
        return marked
    text = prediction.strip()
    if len(text) <= SHORT and "\n" not in text:
        return text
    return flexible(prediction)


def read_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, row in iter_objects(path):
        for key in ("prediction", "gold"):
            if not isinstance(row.get(key), str):
                raise RecordError(path, number, key, "missing or not text")
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
        answer = answer_of(row["prediction"])
        verdict = verify(row["gold"], answer)
        graded.append({**row, "answer": answer, "verdict": verdict.status, "reason": verdict.reason})
        counts[(pack or "-", verdict.status)] += 1
    return graded, counts
