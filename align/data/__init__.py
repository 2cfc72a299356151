"""The shared dataset layer: where rows come from (sources), reading (io), validation and
normalisation (formats, prompts), storage (store), layouts to convert (layouts, convert).

:func:`load` streams a source record by record through the validator into an Arrow file, so
a large dataset is read once and never held in memory as Python objects.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from align.data.formats import FORMATS, TRL_NAMES, Validated, Validator, validate
from align.data.io import parse_columns, rename
from align.data.records import DataError, Record
from align.errors import AlignError

__all__ = ["FORMATS", "TRL_NAMES", "DataError", "DataValidationError", "Validated", "load",
           "load_valid", "validate"]
DEFAULT_MAX_INVALID_FRAC = 0.05


class DataValidationError(AlignError):
    """Raised by :func:`load_valid`; the message lists the first errors and a count."""

    def __init__(self, result: Validated, extra: str = "") -> None:
        self.result = result
        n = max(result.n_errors, len(result.errors))
        hint = f"\n{result.hint}" if result.hint else ""
        super().__init__(f"{result.file}: {n} problem{'s' if n != 1 else ''} in the "
                         f"{result.format} data:\n{result.error_report()}{hint}{extra}")


def load(path: str | os.PathLike, fmt: str, columns: str | dict | None = None, *,
         split: str | None = None, config: str | None = None, flag: str = "--dataset",
         keep_invalid: bool = False) -> Validated:
    """Read and validate a source (file, folder, saved dataset or Hub id) as format ``fmt``.

    Errors are collected, not raised. The valid rows come back as Arrow-backed
    :class:`align.data.store.Rows`. With ``keep_invalid`` the invalid records are written to a
    temporary JSONL file (``Validated.skipped``) with their position and errors.
    """
    from align.data.layouts import conversion_for, mapping_warnings, propose_columns
    from align.data.sources import open_source, source_columns
    from align.data.store import RowWriter, work_dir

    source = open_source(str(path), split, config, flag)
    mapping = parse_columns(columns)
    v = Validator(fmt, source.name)
    writer = RowWriter()
    skipped = _SkipLog(work_dir(), source.name) if keep_invalid else None
    raw_columns = source_columns(source)
    first = True
    for item in source.records(mapping):
        if isinstance(item, DataError):
            v.error(item)
            if skipped is not None and item.position is not None:
                skipped.add(item.position, [item], None)
            continue
        if not raw_columns:
            raw_columns = list(item.raw)
        if first:
            first = False
            hint = conversion_for(item.data, fmt, str(path))
            if hint is not None and not _valid_as_is(fmt, item.data, source.name):
                v.error(DataError(source.name, None, None, hint))  # every record would fail
                break
        if item.errors:
            errors = item.errors
            v.reject(errors)
        else:
            row, errors = v.check(Record(item.position, item.data))
            if row is not None:
                writer.add(row)
                continue
        if skipped is not None:
            skipped.add(item.position, errors, item.raw)
    result = v.finish()
    result.rows = writer.close()
    result.columns = raw_columns
    result.notes = mapping_warnings(fmt, mapping, raw_columns) + result.notes
    if skipped is not None:
        result.skipped = skipped.close()
    if any("missing field" in e.message or "missing fields" in e.message
           for e in result.errors[:50]):
        proposal = propose_columns(list(rename(dict.fromkeys(raw_columns), mapping)), fmt)
        result.hint = (f"the source's columns: {', '.join(raw_columns)}" +
                       (f"; try --columns {proposal}" if proposal else
                        f"; map yours to the {fmt} format's fields with --columns ours=theirs"))
    return result


def _valid_as_is(fmt: str, data: dict[str, Any], name: str) -> bool:
    """Does the record already validate (a layout hint must not refuse usable data)?"""
    row, errors = Validator(fmt, name).check(Record("first record", dict(data)))
    return row is not None


class _SkipLog:
    """The records --skip-invalid drops, spilled to a JSONL file as they come."""

    def __init__(self, folder: Path, source: str) -> None:
        fd, name = tempfile.mkstemp(suffix=".jsonl", dir=folder)
        self.path, self.source = Path(name), source
        self.fh = os.fdopen(fd, "w", encoding="utf-8")

    def add(self, position: str, errors: list[DataError], record: dict[str, Any] | None) -> None:
        entry = {"source": self.source, "position": position,
                 "errors": [(f"field '{e.field}': " if e.field else "") + e.message
                            for e in errors],
                 "record": record}
        self.fh.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")

    def close(self) -> Path:
        self.fh.close()
        return self.path


def load_valid(path: str | os.PathLike, fmt: str, columns: str | dict | None = None, *,
               split: str | None = None, config: str | None = None, flag: str = "--dataset",
               skip_invalid: bool = False,
               max_invalid_frac: float = DEFAULT_MAX_INVALID_FRAC) -> Validated:
    """Like :func:`load`, but raise :class:`DataValidationError` (exit code 2) on any error.

    With ``skip_invalid``, records with errors are dropped instead, unless more than
    ``max_invalid_frac`` of them are bad or the source itself is unreadable (a file-level
    error); ``Validated.skipped`` then holds them (see :func:`write_skipped`).
    """
    result = load(path, fmt, columns, split=split, config=config, flag=flag,
                  keep_invalid=skip_invalid)
    if result.ok:
        return result
    whole_file = [e for e in result.errors if e.position is None]
    if not skip_invalid or whole_file or not result.rows:
        raise DataValidationError(result)
    frac = result.bad_records / max(result.records, 1)
    if frac > max_invalid_frac:
        raise DataValidationError(
            result, f"\n--skip-invalid: {result.bad_records} of {result.records} records "
                    f"({frac:.1%}) are invalid, more than --max-invalid-frac "
                    f"{max_invalid_frac:g}; fix the data or raise --max-invalid-frac")
    return result


def skip_report(result: Validated, limit: int = 5) -> list[str]:
    """Lines that say how many records --skip-invalid dropped and why (the first ones)."""
    if not result.bad_records:
        return []
    frac = result.bad_records / max(result.records, 1)
    lines = [f"--skip-invalid: dropped {result.bad_records} of {result.records} records "
             f"({frac:.1%}) from {result.file}; the first:"]
    lines += [f"  {e}" for e in result.errors[:limit]]
    return lines


def write_skipped(result: Validated, output_dir: str | os.PathLike, append: bool = False
                  ) -> Path | None:
    """Copy the records --skip-invalid dropped to ``OUTPUT_DIR/skipped.jsonl``, one JSON object
    per record: source, position, errors, and the record as read (null for unreadable lines).
    ``append`` adds to the file (the eval data's, after the training data's)."""
    if result.skipped is None or not result.bad_records:
        return None
    target = Path(output_dir) / "skipped.jsonl"
    with open(result.skipped, "rb") as src, target.open("ab" if append else "wb") as dst:
        shutil.copyfileobj(src, dst)
    return target
