"""Bring your own data: problems from a user's data file (JSON Lines, JSON, CSV, Parquet) or
local `datasets` folder.

The question and the answer are named by a field (``question``) or by a template of fields
(``"{context} {query}"``). A gold answer is recognised the way the standard sets write it:
GSM8K's ``... #### 72`` gives ``72``, a MATH solution's last ``\\boxed{}`` gives its content, a
number stored as a number (``145.0``) is taken as written; the verifier then judges it, so
``"9 (apples)"`` and ``145.0`` need no string match. ``level`` and ``subject`` (or ``type``)
fields, where present, feed the per-level and per-subject tables.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reasoner.datafiles import Row, read_rows
from reasoner.errors import MissingFile
from reasoner.records import Problem, RecordError
from reasoner.verifiers.extract import last_boxed
from reasoner.verifiers.grade import gold_text

META_FIELDS = {"level": "level", "subject": "subject", "type": "subject", "unique_id": "unique_id"}


def fields_of(template: str) -> list[str]:
    """The field names a template reads: ``"{context} {query}"`` -> [context, query]; a bare
    name is a template of one field."""
    if "{" not in template:
        return [template]
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def fill(template: str, row: dict[str, Any]) -> Any:
    """A template filled from a row; a list field (AQuA's ``options``) gives one item a line."""
    if "{" not in template:
        return row[template]
    return template.format_map({k: _as_text(v) for k, v in row.items()})


def _as_text(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "\n".join(str(v) for v in value)
    return value


def gold_answer(value: Any) -> str | None:
    """The final answer in a gold field: after GSM8K's ``####``, inside MATH's last
    ``\\boxed{}``, or the value itself (numbers as written)."""
    text = gold_text(value)
    if text is None:
        return None
    if "####" in text:
        return text.rpartition("####")[2].strip().replace(",", "")
    boxed = last_boxed(text)
    return boxed.strip() if boxed is not None else text.strip()


def rows_of(path: Path) -> Iterator[Row]:
    """The rows of a data file (JSON Lines, JSON, CSV, Parquet: `reasoner.datafiles`), of a
    local `datasets` folder (saved with ``save_to_disk``; rows count from 1 there too), or of a
    folder's test split as a pack reads it (``test.jsonl``, ``test.parquet``, the hub's shards
    ``test-00000-of-00002.parquet`` ..., also in ``main/`` or ``data/``)."""
    from reasoner.tasks.loading import split_files

    if not path.exists():
        raise MissingFile(f"{path}: no such file or folder (--data)")
    if not path.is_dir():
        yield from read_rows(path)
        return
    if not any((path / name).exists() for name in ("dataset_dict.json", "state.json", "dataset_info.json")):
        files = split_files(path, ("test", "test500"), "main")
        if not files:
            raise MissingFile(
                f"{path}: neither a datasets folder (save_to_disk) nor a folder with a test split "
                "(test.jsonl, test.parquet, test-00000-of-00001.parquet, ...) (--data)"
            )
        for file in files:
            yield from read_rows(file)
        return
    import datasets

    try:
        data = datasets.load_from_disk(str(path))
    except Exception as err:  # datasets raises many kinds; name the folder either way
        raise RecordError(path, 0, None, f"not a datasets folder ({err})") from None
    if isinstance(data, datasets.DatasetDict):
        split = "test" if "test" in data else next(iter(data))
        data = data[split]
    for number, fields in enumerate(data, start=1):
        yield Row(fields, path, number, "row")


# Field names data sets give their questions and answers (MATH's "problem", AIME's "Problem",
# BIG-Bench's "input"/"target"): named in the error when the asked-for field is missing.
_ALIASES = {
    "question": ("problem", "Problem", "question", "Question", "input", "query", "prompt", "instruction"),
    "answer": ("answer", "Answer", "final_answer", "target", "label", "output", "solution"),
}


def load_problems(
    path: Path, *, pack: str, question: str = "question", answer: str = "answer", limit: int | None = None
) -> list[Problem]:
    """Problems of a user's file. A row without a field a template needs stops the load with
    the file, the line, the fields expected and the fields found."""
    wanted = {"question": fields_of(question), "answer": fields_of(answer)}
    problems: list[Problem] = []
    for row in rows_of(path):
        for role, names in wanted.items():
            missing = [n for n in names if n not in row]
            if missing:
                expected = ", ".join(names)
                found = ", ".join(sorted(row)) or "none"
                alias = next((name for name in _ALIASES[role] if name in row), None)
                hint = f" (pass --{role} {alias} to read it from {alias!r})" if alias else ""
                raise row.error(
                    missing[0],
                    f"missing; the {role} ({'--' + role} {(question if role == 'question' else answer)!r}) "
                    f"needs field(s) {expected}; this {row.unit} has {found}{hint}",
                )
        text = fill(question, row)
        gold = gold_answer(fill(answer, row))
        if not isinstance(text, str) or not text.strip():
            raise row.error(wanted["question"][0], "the question is empty or not text")
        if not gold:
            raise row.error(wanted["answer"][0], "the answer is empty or not text or a number")
        meta = {key: str(row[f]) for f, key in META_FIELDS.items() if row.get(f) is not None}
        problems.append(Problem(id=f"{row.path.stem}-{row.number}", pack=pack, question=text, answer=gold, meta=meta))
        if limit is not None and len(problems) >= limit:
            break
    if not problems:
        raise RecordError(path, 0, None, "no problems in this file")
    return problems


def level_of(problem: Problem) -> str:
    """MATH's "Level 3" as "3"; other labels as written."""
    raw = str(problem.meta.get("level", ""))
    m = re.fullmatch(r"(?i)level\s*(\d+)", raw.strip())
    return m.group(1) if m else raw
