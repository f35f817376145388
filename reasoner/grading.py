"""`reasoner grade`: judge a JSONL file of predictions with the packs' verifiers and write the
result atomically (a bad line stops the run before anything is written)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from reasoner.atomic import atomic_write_text
from reasoner.tasks import PACKS, get_pack
from reasoner.verifiers.grade import grade_file

DEFAULT_VERIFIER = "math"


def verifier_for(pack: str) -> str:
    """The verifier a pack names; the full `math` verifier for lines naming no known pack."""
    if not pack:
        return DEFAULT_VERIFIER
    if pack not in PACKS:
        get_pack(pack)  # raises PackError listing the valid packs
    return PACKS[pack].verifier


def grade_to(source: Path, target: Path, pack: str | None) -> Counter:
    import json

    if pack:
        verifier_for(pack)
    rows, counts = grade_file(source, pack, verifier_for)
    atomic_write_text(target, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return counts
