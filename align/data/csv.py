"""CSV files: reading them row by row, and reading the structures their text cells hold.

Rows come back as :class:`~align.data.records.Record` values positioned ``row N (line M)`` (N
counts data rows from 1, M is the file line where the row starts); tab- or semicolon-separated
files are read as they are. CSV has only text, so cells that hold structures are parsed: JSON
first, then Python literal syntax with :func:`ast.literal_eval` (what ``pandas.to_csv`` writes
for lists of dicts, and the numpy-array form ``[{...} {...}]`` that ``datasets.Dataset.to_csv``
writes), never ``eval``; ``label`` cells read true/false and ``margin`` cells numbers.
"""

from __future__ import annotations

import ast
import csv
import io
import re
import tokenize
from typing import IO, Any, Iterator

from align.data.records import DataError, Record, decoded_lines, parse_json

# Fields whose CSV cells may hold chat messages or other structures, and typed fields.
MESSAGE_FIELDS = ("prompt", "chosen", "rejected", "completion", "messages", "completions",
                  "conversations", "tools")
BOOL_FIELDS = ("label",)
NUMBER_FIELDS = ("margin",)


def iter_csv(fh: IO[bytes], name: str) -> Iterator[Record | DataError]:
    """Every row of a CSV (or TSV) stream as a Record of header -> cell text, with the rows
    that cannot be read as DataErrors between them."""
    bad_lines: set[int] = set()
    current = [0]  # the file line the csv reader last asked for

    def text_lines() -> Iterator[str]:
        for number, line, error in decoded_lines(fh, name):
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
