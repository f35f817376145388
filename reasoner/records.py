"""The records that flow between phases, one JSON object a line.

Each record is a dataclass whose fields carry a JSON type; `read_jsonl` checks every field of
every line and fails with the file, the line number and the field, so a bad line never turns
into a silent default. Writing goes through `reasoner.atomic.atomic_write_jsonl`, so a failure
while writing leaves the earlier file in place.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterable, Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from reasoner.errors import MissingFile, UserError


class RecordError(UserError, ValueError):
    """A malformed record: names the file, the line and the field (or, in a file of rows
    without lines, such as Parquet, the row: ``unit="row"``); line 0 is the whole file."""

    def __init__(self, path: str | Path, line: int, field_name: str | None, message: str, *, unit: str = "line"):
        where = str(path) if line == 0 else f"{path}:{line}" if unit == "line" else f"{path}: {unit} {line}"
        what = f"field '{field_name}': " if field_name else ""
        super().__init__(f"{where}: {what}{message}")
        self.path, self.line, self.field = str(path), line, field_name


@dataclass
class Problem:
    id: str
    pack: str
    question: str
    answer: str
    solution: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Trajectory:
    id: str
    problem_id: str
    prompt: str
    steps: list[str]
    text: str
    answer: str | None = None
    correct: bool | None = None
    source: str = "sample"
    logprob: float = 0.0
    num_tokens: int = 0
    step_token_ends: list[int] = field(default_factory=list)
    outcome_reward: float | None = None
    step_rewards: dict[str, list[float]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class TreeNode:
    id: int
    parent: int | None
    step: str
    token_start: int = 0
    token_end: int = 0
    visits: int = 0
    value: float = 0.0
    prior: float = 1.0
    terminal: bool = False
    correct: bool | None = None


@dataclass
class Tree:
    id: str
    problem_id: str
    source: str
    nodes: list[TreeNode] = field(default_factory=list)


@dataclass
class StepLabels:
    trajectory_id: str
    labeller: str
    labels: list[float]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pair:
    problem_id: str
    chosen: str
    rejected: str
    weight: float = 1.0
    source: str = ""


R = TypeVar("R")

_NESTED = {"nodes": TreeNode}


def _check(value: Any, hint: Any) -> bool:
    """True when a decoded JSON value fits the type hint (bool is not accepted as a number)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_check(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (str, bool):
        return isinstance(value, hint)
    if origin is list:
        (inner,) = typing.get_args(hint)
        return isinstance(value, list) and all(_check(v, inner) for v in value)
    if origin is dict:
        key, inner = typing.get_args(hint)
        return isinstance(value, dict) and all(_check(v, inner) for v in value.values())
    if isinstance(hint, type) and hasattr(hint, "__dataclass_fields__"):
        return isinstance(value, dict)
    return True


def from_dict(cls: type[R], data: Any, *, path: str | Path = "<memory>", line: int = 0) -> R:
    """Build a record from a decoded JSON object, checking every field."""
    if not isinstance(data, dict):
        raise RecordError(path, line, None, f"expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RecordError(path, line, unknown[0], f"unknown field for {cls.__name__}")
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise RecordError(path, line, f.name, "missing required field")
            continue
        value = data[f.name]
        if not _check(value, hints[f.name]):
            expected = getattr(hints[f.name], "__name__", str(hints[f.name]))
            raise RecordError(path, line, f.name, f"expected {expected}, got {value!r:.60}")
        if f.name in _NESTED and cls is Tree:
            value = [from_dict(_NESTED[f.name], v, path=path, line=line) for v in value]
        kwargs[f.name] = value
    return cls(**kwargs)


def to_dict(record: Any) -> dict[str, Any]:
    """A record as a plain dict; plain dicts pass through."""
    return record if isinstance(record, dict) else asdict(record)


def to_line(record: Any) -> str:
    return json.dumps(to_dict(record), ensure_ascii=False, sort_keys=False)


def iter_objects(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, JSON object) from a JSONL file; blank lines are skipped; a line that
    is not UTF-8 text or not a JSON object is an error naming the file and line."""
    path = Path(path)
    if not path.exists():
        raise MissingFile(f"{path}: no such file")
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:  # a byte-order mark (as editors on Windows write) is not part of the first line
                raw = line.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise RecordError(path, number, None, f"not UTF-8 text (byte {err.start + 1} of the line)") from None
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as err:
                raise RecordError(path, number, None, f"invalid JSON: {err.msg}") from err
            if not isinstance(data, dict):
                raise RecordError(path, number, None, f"expected a JSON object, got {type(data).__name__}")
            yield number, data


def iter_jsonl(path: str | Path, cls: type[R]) -> Iterator[R]:
    """Yield records from a JSONL file, every field of every line checked."""
    for number, data in iter_objects(path):
        yield from_dict(cls, data, path=path, line=number)


def read_jsonl(path: str | Path, cls: type[R]) -> list[R]:
    return list(iter_jsonl(path, cls))


def jsonl_text(records: Iterable[Any]) -> str:
    return "".join(to_line(r) + "\n" for r in records)
