"""Rows of a user's data file, in the formats data sets ship in.

JSON Lines (``.jsonl``, ``.ndjson``), JSON (``.json``: an array of objects, an object holding
one such array as the hub's exports do (``{"data": [...]}``) or its splits (the ``test`` one is
read), or JSON Lines under that name),
CSV and TSV (a header line naming the fields; every value is text) and Parquet (the hub's own
format: ``test-00000-of-00001.parquet``); any other suffix is read as JSON Lines, as every
file was before. Every row comes with where it is, so an error names
the file and the line (JSON Lines, CSV) or the row (a JSON array, Parquet); rows count from 1.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from reasoner.errors import MissingFile, UserError
from reasoner.records import RecordError, iter_objects


class Row(dict):
    """A row's fields, and where it was read: its file (``path``), and its line or row
    (``number``, counted in ``unit``: ``"line"`` or ``"row"``)."""

    def __init__(self, fields: dict[str, Any], path: Path, number: int, unit: str = "line"):
        super().__init__(fields)
        self.path, self.number, self.unit = path, number, unit

    def error(self, field_name: str | None, message: str) -> RecordError:
        """An error naming the file, this row's line (or row number) and the field."""
        return RecordError(self.path, self.number, field_name, message, unit=self.unit)


def read_rows(path: str | Path) -> Iterator[Row]:
    """The rows of ``path``, read by its suffix (`READERS`; see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in READERS:
        yield from READERS[suffix](path)
        return
    rows = _jsonl_rows(path)  # another suffix (.txt, none): JSON Lines, as before formats were told apart
    try:
        first = next(rows, None)
    except RecordError as err:
        what = suffix or "a file without a suffix"
        raise UserError(f"{err}; data files are {', '.join(READERS)} (this one: {what})") from None
    if first is not None:
        yield first
    yield from rows


def _jsonl_rows(path: Path) -> Iterator[Row]:
    for number, obj in iter_objects(path):
        yield Row(obj, path, number)


def _text(path: Path) -> str:
    """The file's text: UTF-8, a leading byte-order mark dropped (Excel writes one); other
    bytes are an error naming the line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise RecordError(path, line, None, "not UTF-8 text (save the file as UTF-8)") from None


def _json_rows(path: Path) -> Iterator[Row]:
    text = _text(path)
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:  # not one JSON value: JSON Lines under a .json name
        yield from _jsonl_rows(path)
        return
    if isinstance(whole, dict):
        lists = {k: v for k, v in whole.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)}
        if "test" in lists:  # splits in one file: {"train": [...], "test": [...]}
            whole = lists["test"]
        elif len(lists) == 1:
            whole = next(iter(lists.values()))
        else:  # a file of one object is a file of one row
            yield Row(whole, path, 1)
            return
    if not isinstance(whole, list):
        raise RecordError(path, 1, None, f"expected an array of objects, got {type(whole).__name__}")
    for number, obj in enumerate(whole, start=1):
        if not isinstance(obj, dict):
            raise RecordError(path, number, None, f"expected a JSON object, got {type(obj).__name__}", unit="row")
        yield Row(obj, path, number, "row")


def _csv_rows(path: Path, delimiter: str) -> Iterator[Row]:
    reader = csv.DictReader(io.StringIO(_text(path), newline=""), delimiter=delimiter)
    if not reader.fieldnames:
        return
    for fields in reader:
        extra = fields.pop(None, None)  # DictReader files surplus values under None
        if extra:
            raise RecordError(path, reader.line_num, None, f"{len(extra)} more value(s) than the header's fields")
        # a short line's missing values are None: the field is absent, not empty
        yield Row({k: v for k, v in fields.items() if v is not None}, path, reader.line_num)


def _parquet_rows(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq  # comes with `datasets`

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several kinds; name the file either way
        raise RecordError(path, 0, None, f"not a Parquet file ({err})") from None
    for number, fields in enumerate(table.to_pylist(), start=1):
        yield Row(fields, path, number, "row")


# A reader by suffix: each yields a file's rows with their line or row numbers.
READERS: dict[str, Callable[[Path], Iterator[Row]]] = {
    ".jsonl": _jsonl_rows,
    ".ndjson": _jsonl_rows,
    ".json": _json_rows,
    ".csv": lambda path: _csv_rows(path, ","),
    ".tsv": lambda path: _csv_rows(path, "\t"),
    ".parquet": _parquet_rows,
}
SUFFIXES = tuple(READERS)
