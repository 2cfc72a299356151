"""Read records from .jsonl, .json, .csv, .parquet files and `datasets.save_to_disk` directories.

Every record comes back with its position in the source, in the unit a user would look for:
``line N`` (1-based) for JSONL, ``row N (line M)`` for CSV (N counts data rows from 1, M is the
file line), ``index N (record N+1)`` for JSON arrays, parquet and saved datasets. Problems that
stop a record from being read (bad bytes, bad JSON) become :class:`DataError` values, never
exceptions, so one pass reports everything that is wrong with a file.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from align.errors import AlignError

SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
# Fields whose CSV cells may hold a JSON list of chat messages, and fields with non-string types.
MESSAGE_FIELDS = ("prompt", "chosen", "rejected", "completion", "messages", "completions")
BOOL_FIELDS = ("label",)
NUMBER_FIELDS = ("margin",)


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
    position: str
    data: dict[str, Any]


def parse_columns(spec: str | dict | None) -> dict[str, str]:
    """Parse ``prompt=question,chosen=good`` into ``{"question": "prompt", "good": "chosen"}``.

    The user writes ``ours=theirs``; the result maps their column name to ours.
    """
    if not spec:
        return {}
    pairs = spec.items() if isinstance(spec, dict) else (
        part.split("=", 1) if "=" in part else (part, None)
        for part in str(spec).split(",") if part.strip()
    )
    mapping: dict[str, str] = {}
    for ours, theirs in pairs:
        if theirs is None or not str(ours).strip() or not str(theirs).strip():
            raise AlignError(
                f"--columns {spec!r}: each entry must read ours=theirs, e.g. prompt=question"
            )
        mapping[str(theirs).strip()] = str(ours).strip()
    return mapping


def read_records(path: str | os.PathLike, columns: str | dict | None = None
                 ) -> tuple[list[Record], list[DataError], str]:
    """Read every record of ``path``; return ``(records, read_errors, kind)``.

    ``kind`` is one of jsonl, json, csv, parquet, saved. Column renames from ``columns`` are
    applied here, so the rest of align only ever sees our field names.
    """
    p = Path(path)
    name = str(path)
    mapping = parse_columns(columns)
    if not p.exists():
        raise AlignError(f"{name}: no such file or directory")
    if p.is_dir():
        records, errors = _read_saved(p, name), []
        kind = "saved"
    else:
        suffix = p.suffix.lower()
        if suffix not in SUFFIXES:
            raise AlignError(
                f"{name}: unsupported file type '{p.suffix or '(none)'}'; use .jsonl, .json, .csv, "
                ".tsv, .parquet or a directory written by datasets.save_to_disk"
            )
        raw = p.read_bytes()
        if not raw.strip():
            return [], [DataError(name, None, None, "file is empty: no records found")], suffix[1:]
        reader = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv,
                  ".tsv": _read_csv, ".parquet": _read_parquet}[suffix]
        records, errors = reader(raw, name, p)
        kind = "csv" if suffix == ".tsv" else suffix[1:]
    if mapping:
        records = [Record(r.position, _rename(r.data, mapping)) for r in records]
    if kind == "csv":
        for r in records:
            _coerce_csv_cells(r.data)
    if not records and not errors:
        errors.append(DataError(name, None, None, "file holds no records"))
    return records, errors, kind


def _rename(data: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in mapping:
            out[mapping[key]] = value
        elif key not in out:  # a renamed column wins over an unmapped one with our name
            out[key] = value
    return out


def _decode_lines(raw: bytes, name: str) -> tuple[list[str], list[DataError]]:
    """Split into lines and decode each as UTF-8 (a BOM is allowed), reporting bad lines."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return [], [DataError(name, None, None, "the file is UTF-16 encoded (it starts with a "
                                                "UTF-16 byte-order mark); re-save it as UTF-8")]
    lines, errors = [], []
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            lines.append(chunk.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as e:
            errors.append(DataError(
                name, f"line {number}", None,
                f"bytes that are not UTF-8 (byte 0x{chunk[e.start]:02x} at column {e.start + 1}); "
                "re-save the file as UTF-8",
            ))
            lines.append("")
    return lines, errors


def _describe_json_error(e: json.JSONDecodeError) -> str:
    return f"not valid JSON ({e.msg} at column {e.colno})"


class _NotJSON(ValueError):
    """Valid for Python's json module but not for JSON (NaN, Infinity) or ambiguous
    (a key given twice)."""


def _reject_constant(name: str) -> Any:
    raise _NotJSON(f"{name} is not a JSON value; write a number or null")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _NotJSON(f"the key {key!r} appears twice in one object; keep one")
        seen[key] = value
    return seen


def parse_json(text: str) -> Any:
    """json.loads that refuses NaN/Infinity and duplicate keys, and turns pathological nesting
    into a ValueError instead of a RecursionError."""
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise _NotJSON("nested too deeply to read") from None


def _read_jsonl(raw: bytes, name: str, _p: Path) -> tuple[list[Record], list[DataError]]:
    lines, errors = _decode_lines(raw, name)
    bad_lines = {e.position for e in errors}
    records = []
    for number, line in enumerate(lines, start=1):
        position = f"line {number}"
        if not line.strip() or position in bad_lines:
            continue  # blank lines (often a trailing newline) carry no record
        try:
            value = parse_json(line)
        except json.JSONDecodeError as e:
            errors.append(DataError(name, position, None, _describe_json_error(e)))
            continue
        except _NotJSON as e:
            errors.append(DataError(name, position, None, f"not valid JSON: {e}"))
            continue
        if not isinstance(value, dict):
            errors.append(DataError(
                name, position, None,
                f"expected a JSON object {{...}} on each line, found {describe(value)}",
            ))
            continue
        records.append(Record(position, value))
    return records, errors


def _read_json(raw: bytes, name: str, p: Path) -> tuple[list[Record], list[DataError]]:
    lines, errors = _decode_lines(raw, name)
    if errors:
        return [], errors
    text = "\n".join(lines)
    try:
        value = parse_json(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":
            # Many .json files are really JSON Lines (one object per line): read them so.
            return _read_jsonl(raw, name, p)
        return [], [DataError(name, f"line {e.lineno}", None, _describe_json_error(e))]
    except _NotJSON as e:
        return [], [DataError(name, None, None, f"not valid JSON: {e}")]
    if isinstance(value, dict):
        return [], [DataError(
            name, None, None,
            "expected a JSON array of objects [{...}, {...}], found a single object; "
            "put the records in a list, or write one object per line in a .jsonl file",
        )]
    if not isinstance(value, list):
        return [], [DataError(name, None, None,
                              f"expected a JSON array of objects, found {describe(value)}")]
    records = []
    for i, item in enumerate(value):
        position = f"index {i} (record {i + 1})"
        if not isinstance(item, dict):
            errors.append(DataError(name, position, None,
                                    f"expected a JSON object {{...}}, found {describe(item)}"))
            continue
        records.append(Record(position, item))
    return records, errors


def _read_csv(raw: bytes, name: str, _p: Path) -> tuple[list[Record], list[DataError]]:
    lines, errors = _decode_lines(raw, name)
    if errors:
        return [], errors
    first = next((line for line in lines if line.strip()), "")
    # Spreadsheets often save "CSV" with tabs or semicolons; read those as they are.
    delimiter = "," if "," in first else "\t" if "\t" in first else ";" if ";" in first else ","
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as e:
        return [], [DataError(name, "line 1", None, f"cannot read the CSV header ({e})")]
    header = [h.strip() for h in header]
    if not any(header):
        return [], [DataError(name, "line 1", None, "the CSV header row is empty")]
    records = []
    row_number = 0
    start_line = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            errors.append(DataError(name, f"line {start_line}", None, f"malformed CSV ({e})"))
            break
        if not any(c.strip() for c in cells):
            start_line = reader.line_num + 1
            continue
        row_number += 1
        position = f"row {row_number} (line {start_line})"
        start_line = reader.line_num + 1
        if len(cells) != len(header):
            errors.append(DataError(
                name, position, None,
                f"expected {len(header)} cells as in the header, found {len(cells)}; "
                "quote cells that contain commas",
            ))
            continue
        records.append(Record(position, dict(zip(header, cells))))
    return records, errors


def _coerce_csv_cells(data: dict[str, Any]) -> None:
    """CSV has only text: read JSON message lists, true/false labels and numeric margins."""
    for key, value in list(data.items()):
        if not isinstance(value, str):
            continue
        text = value.strip()
        if key in MESSAGE_FIELDS and text.startswith("["):
            try:
                data[key] = parse_json(text)
            except ValueError:
                pass  # stays a string; validation decides whether that is acceptable
        elif key in BOOL_FIELDS and text.lower() in ("true", "false"):
            data[key] = text.lower() == "true"
        elif key in NUMBER_FIELDS and text:
            try:
                data[key] = float(text)
            except ValueError:
                pass


def _read_parquet(_raw: bytes, name: str, p: Path) -> tuple[list[Record], list[DataError]]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(p).to_pylist()
    except Exception as e:  # pyarrow raises several types for corrupt files
        return [], [DataError(name, None, None, f"cannot read as parquet ({e})")]
    return [Record(f"index {i} (record {i + 1})", row) for i, row in enumerate(rows)], []


def _read_saved(p: Path, name: str) -> list[Record]:
    if not (p / "dataset_info.json").exists() and not (p / "dataset_dict.json").exists():
        raise AlignError(
            f"{name}: a directory must be written by datasets' save_to_disk "
            "(no dataset_info.json or dataset_dict.json inside)"
        )
    import datasets

    try:
        ds = datasets.load_from_disk(str(p))
    except Exception as e:
        raise AlignError(f"{name}: cannot load the saved dataset ({e})") from e
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise AlignError(
                f"{name}: saved DatasetDict has no 'train' split (splits: {', '.join(ds)}); "
                "save the split you want on its own"
            )
        ds = ds["train"]
    return [Record(f"index {i} (record {i + 1})", row) for i, row in enumerate(ds.to_list())]


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


def write_jsonl(rows: list[dict[str, Any]], path: str | os.PathLike) -> None:
    """Write rows as UTF-8 JSON Lines, creating parent directories."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
