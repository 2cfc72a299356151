"""What every reader of a data file yields, and the decoding they share.

A reader turns a file into :class:`Record` values (a record and its position in the source, in
the unit a user would look for: ``line N`` for JSONL, ``row N (line M)`` for CSV, ``index N
(record N+1)`` for JSON arrays and parquet) with :class:`DataError` values between them for what
could not be read (bad bytes, bad JSON), never exceptions, so one pass reports everything that
is wrong with a file. :func:`decoded_lines` and :func:`parse_json` are the UTF-8 and JSON
decoding the JSON Lines and CSV readers (:mod:`align.data.io`, :mod:`align.data.csv`) share.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import IO, Any, Iterator


@dataclass(frozen=True)
class DataError:
    """One problem in a dataset file, located precisely enough to fix by hand."""

    file: str
    position: str | None  # "line 3", "row 2 (line 3)", "index 4 (record 5)"; None: whole file
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.position is None else f"{self.file}, {self.position}"
        if self.field:
            where += f", field '{self.field}'"
        return f"{where}: {self.message}"


@dataclass
class Record:
    """One record of a source and where it is (``line 3``, ``row 2 (line 3)``, ...)."""

    position: str
    data: dict[str, Any]


def decoded_lines(fh: IO[bytes], name: str
                  ) -> Iterator[tuple[int, str | None, DataError | None]]:
    """(line number, text or None, error): each line decoded as UTF-8 (a BOM is allowed)."""
    for number, chunk in enumerate(fh, start=1):
        if number == 1 and chunk.startswith(b"\xef\xbb\xbf"):
            chunk = chunk[3:]
        chunk = chunk.rstrip(b"\n").rstrip(b"\r")
        try:
            yield number, chunk.decode("utf-8"), None
        except UnicodeDecodeError as e:
            yield number, None, DataError(
                name, f"line {number}", None,
                f"bytes that are not UTF-8 (byte 0x{chunk[e.start]:02x} at column {e.start + 1}); "
                "re-save the file as UTF-8")


class NotJSON(ValueError):
    """Valid for Python's json module but not for JSON (NaN, Infinity) or ambiguous
    (a key given twice)."""


def _reject_constant(name: str) -> Any:
    raise NotJSON(f"{name} is not a JSON value; write a number or null")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise NotJSON(f"the key {key!r} appears twice in one object; keep one")
        seen[key] = value
    return seen


def parse_json(text: str) -> Any:
    """json.loads that refuses NaN/Infinity and duplicate keys, and turns pathological nesting
    into a ValueError instead of a RecursionError."""
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise NotJSON("nested too deeply to read") from None


def describe(value: Any) -> str:
    """A short, user-facing description of a value's type, as in 'found integer 1'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {json.dumps(value)}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value:g}"
    if isinstance(value, str):
        if not value.strip():
            return "an empty string"
        short = value if len(value) <= 40 else value[:37] + "..."
        return f"string {json.dumps(short, ensure_ascii=False)}"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}" if value else "an empty list"
    if isinstance(value, dict):
        return "an object {...}" if value else "an empty object {}"
    return type(value).__name__
