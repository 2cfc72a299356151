"""Read records from data files, one at a time: .jsonl, .json, .csv/.tsv, .parquet, each
optionally compressed (.gz, .bz2, .xz, .zst, .lz4) or inside a .zip.

Every record comes back with its position in the source, in the unit a user would look for:
``line N`` (1-based) for JSONL, ``row N (line M)`` for CSV (N counts data rows from 1, M is the
file line), ``index N (record N+1)`` for JSON arrays and parquet. Problems that stop a record
from being read (bad bytes, bad JSON) come back as :class:`DataError` values in file order,
never as exceptions, so one pass reports everything that is wrong with a file.

Files are read as streams: JSONL, CSV and parquet hold one record (or one parquet batch) in
memory at a time. A JSON array is parsed whole, as ``json`` and ``datasets`` both do.

CSV has only text, so cells that hold structures are parsed: JSON first, then Python literal
syntax with :func:`ast.literal_eval` (what ``pandas.to_csv`` writes for lists of dicts, and the
numpy-array form ``[{...} {...}]`` that ``datasets.Dataset.to_csv`` writes), never ``eval``.
"""

from __future__ import annotations

import ast
import bz2
import csv
import gzip
import io
import json
import lzma
import os
import re
import tokenize
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator

from align.errors import AlignError

SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".lz4")
# Fields whose CSV cells may hold chat messages or other structures, and typed fields.
MESSAGE_FIELDS = ("prompt", "chosen", "rejected", "completion", "messages", "completions",
                  "conversations", "tools")
BOOL_FIELDS = ("label",)
NUMBER_FIELDS = ("margin",)
PARQUET_BATCH = 1000


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


def rename(data: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """Apply a :func:`parse_columns` mapping to one record."""
    if not mapping:
        return data
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in mapping:
            out[mapping[key]] = value
        elif key not in out:  # a renamed column wins over an unmapped one with our name
            out[key] = value
    return out


def data_suffix(path: Path) -> tuple[str, str | None]:
    """``data.jsonl.gz`` -> ``(".jsonl", ".gz")``; ``data.csv`` -> ``(".csv", None)``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        return (suffixes[-2] if len(suffixes) > 1 else ""), suffixes[-1]
    return (suffixes[-1] if suffixes else ""), None


def check_readable(path: Path, name: str) -> None:
    """Refuse, with the list of what is readable, a file align cannot read."""
    if path.suffix.lower() == ".zip":
        return
    inner, _ = data_suffix(path)
    if inner not in SUFFIXES:
        raise AlignError(
            f"{name}: unsupported file type '{''.join(path.suffixes) or '(none)'}'; use .jsonl, "
            ".json, .csv, .tsv or .parquet (optionally compressed: "
            f"{', '.join(COMPRESSIONS)}, or in a .zip), a folder of such files, a directory "
            "written by datasets.save_to_disk, or a Hugging Face Hub dataset id"
        )


def _open_binary(path: Path, compression: str | None) -> IO[bytes]:
    if compression is None:
        return path.open("rb")
    if compression == ".gz":
        return gzip.open(path, "rb")
    if compression == ".bz2":
        return bz2.open(path, "rb")
    if compression == ".xz":
        return lzma.open(path, "rb")
    try:
        if compression == ".zst":
            import zstandard

            return zstandard.ZstdDecompressor().stream_reader(path.open("rb"))
        import lz4.frame

        return lz4.frame.open(path, "rb")
    except ImportError:
        package = "zstandard" if compression == ".zst" else "lz4"
        raise AlignError(f"{path}: reading {compression} files needs the {package} package: "
                         f"pip install {package}") from None


def iter_file(path: str | os.PathLike, name: str | None = None
              ) -> Iterator[Record | DataError]:
    """Every record of one file, in order, with the read errors between them.

    ``name`` is how messages call the file (default: the path as given).
    """
    p = Path(path)
    name = name or str(path)
    if not p.is_file():
        raise AlignError(f"{name}: no such file or directory")
    check_readable(p, name)
    if p.suffix.lower() == ".zip":
        yield from _iter_zip(p, name)
        return
    inner, compression = data_suffix(p)
    try:
        with _open_binary(p, compression) as fh:
            yield from _iter_stream(fh, inner, name, p if compression is None else None)
    except (OSError, EOFError, lzma.LZMAError) as e:
        # a truncated or corrupt archive: say so, in one line, after what could be read
        yield DataError(name, None, None, f"cannot read the {compression or 'file'} "
                                          f"stream to its end ({e}); the file is damaged")


def _iter_zip(p: Path, name: str) -> Iterator[Record | DataError]:
    with zipfile.ZipFile(p) as archive:
        members = sorted(m for m in archive.namelist()
                         if data_suffix(Path(m))[0] in SUFFIXES and data_suffix(Path(m))[1] is None
                         and not m.startswith("__MACOSX/"))
        if not members:
            yield DataError(name, None, None, f"the archive holds no {', '.join(SUFFIXES)} file")
        for member in members:
            with archive.open(member) as fh:
                yield from _iter_stream(fh, data_suffix(Path(member))[0], f"{name}/{member}",
                                        None)


def _iter_stream(fh: IO[bytes], suffix: str, name: str, path: Path | None
                 ) -> Iterator[Record | DataError]:
    head = fh.peek(4)[:4] if hasattr(fh, "peek") else b""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        yield DataError(name, None, None, "the file is UTF-16 encoded (it starts with a "
                                          "UTF-16 byte-order mark); re-save it as UTF-8")
        return
    if suffix == ".parquet":  # random access: a path, or the decompressed bytes
        items = _iter_parquet(path if path is not None else io.BytesIO(fh.read()), name)
    else:
        reader = {".jsonl": _iter_jsonl, ".json": _iter_json, ".csv": _iter_csv,
                  ".tsv": _iter_csv}
        items = reader[suffix](fh, name)
    seen = False
    for item in items:
        seen = True
        yield item
    if not seen:
        yield DataError(name, None, None, "file is empty: no records found")


def _lines(fh: IO[bytes], name: str) -> Iterator[tuple[int, str | None, DataError | None]]:
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


def _json_object(line: str, name: str, position: str) -> Record | DataError:
    try:
        value = parse_json(line)
    except json.JSONDecodeError as e:
        return DataError(name, position, None, _describe_json_error(e))
    except _NotJSON as e:
        return DataError(name, position, None, f"not valid JSON: {e}")
    if not isinstance(value, dict):
        return DataError(name, position, None,
                         f"expected a JSON object {{...}} on each line, found {describe(value)}")
    return Record(position, value)


def _iter_jsonl(fh: IO[bytes], name: str) -> Iterator[Record | DataError]:
    for number, line, error in _lines(fh, name):
        if error is not None:
            yield error
        elif line.strip():  # blank lines (often a trailing newline) carry no record
            yield _json_object(line, name, f"line {number}")


def _iter_json(fh: IO[bytes], name: str) -> Iterator[Record | DataError]:
    raw = fh.read()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw.strip():
        yield DataError(name, None, None, "file is empty: no records found")
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        yield from (e for _, _, e in _lines(io.BytesIO(raw), name) if e is not None)
        return
    try:
        value = parse_json(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":
            # Many .json files are really JSON Lines (one object per line): read them so.
            yield from _iter_jsonl(io.BytesIO(raw), name)
            return
        yield DataError(name, f"line {e.lineno}", None, _describe_json_error(e))
        return
    except _NotJSON as e:
        yield DataError(name, None, None, f"not valid JSON: {e}")
        return
    if isinstance(value, dict):
        yield DataError(name, None, None,
                        "expected a JSON array of objects [{...}, {...}], found a single object; "
                        "put the records in a list, or write one object per line in a .jsonl file")
        return
    if not isinstance(value, list):
        yield DataError(name, None, None,
                        f"expected a JSON array of objects, found {describe(value)}")
        return
    for i, item in enumerate(value):
        position = f"index {i} (record {i + 1})"
        if not isinstance(item, dict):
            yield DataError(name, position, None,
                            f"expected a JSON object {{...}}, found {describe(item)}")
        else:
            yield Record(position, item)


def _iter_csv(fh: IO[bytes], name: str) -> Iterator[Record | DataError]:
    bad_lines: set[int] = set()
    current = [0]  # the file line the csv reader last asked for

    def text_lines() -> Iterator[str]:
        for number, line, error in _lines(fh, name):
            current[0] = number
            if error is not None:
                bad_lines.add(number)
                errors_out.append(error)
                line = ""
            yield line + "\n"

    errors_out: list[DataError] = []
    lines = text_lines()
    first = next(lines, "")
    yield from errors_out
    errors_out.clear()
    # Spreadsheets often save "CSV" with tabs or semicolons; read those as they are.
    delimiter = "," if "," in first else "\t" if "\t" in first else ";" if ";" in first else ","
    reader = csv.reader(_chain([first], lines), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except (StopIteration, csv.Error) as e:
        yield DataError(name, "line 1", None, f"cannot read the CSV header ({e})")
        return
    if not any(header):
        yield DataError(name, "line 1", None, "the CSV header row is empty")
        return
    row_number, start_line = 0, current[0] + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            yield from errors_out
            yield DataError(name, f"line {start_line}", None, f"malformed CSV ({e})")
            return
        yield from errors_out
        errors_out.clear()
        end_line = current[0]
        spans_bad = any(n in bad_lines for n in range(start_line, end_line + 1))
        if not any(c.strip() for c in cells):
            start_line = end_line + 1
            continue
        row_number += 1
        position = f"row {row_number} (line {start_line})"
        start_line = end_line + 1
        if spans_bad:
            continue  # its bytes were reported above; a half-decoded row must not train
        if len(cells) != len(header):
            yield DataError(name, position, None,
                            f"expected {len(header)} cells as in the header, found {len(cells)}; "
                            "quote cells that contain commas")
            continue
        yield Record(position, dict(zip(header, cells)))


def _chain(first: list[str], rest: Iterator[str]) -> Iterator[str]:
    yield from first
    yield from rest


def _iter_parquet(source: Any, name: str) -> Iterator[Record | DataError]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source)
        batches = parquet.iter_batches(batch_size=PARQUET_BATCH)
        index = 0
        for batch in batches:
            for row in batch.to_pylist():
                yield Record(f"index {index} (record {index + 1})", row)
                index += 1
    except Exception as e:  # pyarrow raises several types for corrupt files
        yield DataError(name, None, None, f"cannot read as parquet ({e})")
        return


# ---- CSV cells ---------------------------------------------------------------------------


_MESSAGE_LIKE = re.compile(r"""^\s*\[\s*\{.*['"](role|content|from|value)['"]\s*:""", re.S)


def parse_cell(text: str) -> Any:
    """The structure a CSV cell holds: JSON, else a Python literal (lists, dicts, strings,
    numbers, True/False/None) as ``pandas``/``datasets`` write them. Never ``eval``.

    Raises ValueError when the text is neither.
    """
    try:
        return parse_json(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(_numpy_repr_to_literal(text))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        raise ValueError(f"{type(e).__name__}: {e}") from None


def _numpy_repr_to_literal(text: str) -> str:
    """Rewrite numpy's array repr into list syntax: ``[{...} {...}]`` (elements separated by
    whitespace, as ``datasets.Dataset.to_csv`` writes lists of dicts) gets its commas back, and
    ``array([...], dtype=object)`` becomes ``[...]``. Works on tokens, so text inside strings is
    never touched."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return text
    out: list[tuple[int, str]] = []
    depth_array: list[bool] = []  # per open "(": is it an array( call?
    prev = None
    value_end = {tokenize.STRING, tokenize.NUMBER, tokenize.NAME}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        kind, s = tok.type, tok.string
        if kind in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                    tokenize.ENDMARKER, tokenize.COMMENT):
            i += 1
            continue
        if kind == tokenize.NAME and s == "array" and i + 1 < len(tokens) and \
                tokens[i + 1].string == "(":
            depth_array.append(True)
            i += 2
            continue
        if s == "(":
            depth_array.append(False)
        if s == "," and depth_array and depth_array[-1] and i + 1 < len(tokens) and \
                tokens[i + 1].string == "dtype":
            # skip ", dtype=object" (up to the closing parenthesis of array(...))
            while i < len(tokens) and tokens[i].string != ")":
                i += 1
            continue
        if s == ")" and depth_array:
            if depth_array.pop():
                i += 1
                prev = (tokenize.OP, "]")
                continue
        starts_value = kind in value_end or s in ("[", "{", "(", "-")
        if prev is not None and starts_value and (prev[0] in value_end or prev[1] in ("]", "}", ")")):
            out.append((tokenize.OP, ","))
        out.append((kind, s))
        prev = (kind, s)
        i += 1
    return " ".join(s for _, s in out)


def coerce_csv_cells(data: dict[str, Any]) -> list[tuple[str, str]]:
    """CSV has only text: read structures (chat messages and other lists of objects),
    true/false labels and numeric margins. Returns ``(field, message)`` for each cell that
    looks like a list of chat messages but cannot be read: such a cell must not train as text.
    """
    problems = []
    for key, value in list(data.items()):
        if not isinstance(value, str):
            continue
        text = value.strip()
        structured = key in MESSAGE_FIELDS and text.startswith(("[", "{"))
        if structured or text.startswith(("[{", "[ {")):
            try:
                data[key] = parse_cell(text)
            except ValueError as e:
                if _MESSAGE_LIKE.match(text):
                    problems.append((key, "the cell looks like a list of chat messages but is "
                                          f"neither JSON nor a Python literal ({e}); write it "
                                          "as JSON, e.g. [{\"role\": \"user\", \"content\": "
                                          "\"...\"}]"))
        elif key in BOOL_FIELDS and text.lower() in ("true", "false"):
            data[key] = text.lower() == "true"
        elif key in NUMBER_FIELDS and text:
            try:
                data[key] = float(text)
            except ValueError:
                pass
    return problems


def read_records(path: str | os.PathLike, columns: str | dict | None = None
                 ) -> tuple[list[Record], list[DataError], str]:
    """Every record of a small file, in memory: ``(records, read_errors, kind)``.

    For conversions and tests; training data goes through :func:`align.data.load`, which
    streams. Column renames from ``columns`` and CSV cell parsing are applied.
    """
    mapping = parse_columns(columns)
    kind = data_suffix(Path(path))[0].lstrip(".").replace("tsv", "csv")
    records, errors = [], []
    for item in iter_file(path):
        if isinstance(item, DataError):
            errors.append(item)
            continue
        data = rename(item.data, mapping)
        if kind == "csv":
            errors += [DataError(str(path), item.position, f, m) for f, m in coerce_csv_cells(data)]
        records.append(Record(item.position, data))
    return records, errors, kind


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


def write_jsonl(rows: Any, path: str | os.PathLike) -> int:
    """Write rows (any iterable of dicts) as UTF-8 JSON Lines, creating parent directories;
    return how many were written."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with out.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n
