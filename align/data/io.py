"""Read records from data files, one at a time: .jsonl, .json, .csv/.tsv, .parquet, each
optionally compressed (.gz, .bz2, .xz, .zst, .lz4) or inside a .zip.

Every record comes back as an :class:`align.data.records.Record` with its position in the source,
and problems that stop a record from being read as :class:`align.data.records.DataError` values
in file order. CSV files (and the structures their cells hold) are read by
:mod:`align.data.csv`.

Files are read as streams: JSONL, CSV and parquet hold one record (or one parquet batch) in
memory at a time. A JSON array is parsed whole, as ``json`` and ``datasets`` both do.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import zipfile
from pathlib import Path
from typing import IO, Any, Iterator

from align.data.csv import iter_csv
from align.data.records import DataError, NotJSON, Record, decoded_lines, describe, parse_json
from align.errors import AlignError

SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".lz4")
PARQUET_BATCH = 1000


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
        reader = {".jsonl": _iter_jsonl, ".json": _iter_json, ".csv": iter_csv,
                  ".tsv": iter_csv}
        items = reader[suffix](fh, name)
    seen = False
    for item in items:
        seen = True
        yield item
    if not seen:
        yield DataError(name, None, None, "file is empty: no records found")


def _describe_json_error(e: json.JSONDecodeError) -> str:
    return f"not valid JSON ({e.msg} at column {e.colno})"


def _json_object(line: str, name: str, position: str) -> Record | DataError:
    try:
        value = parse_json(line)
    except json.JSONDecodeError as e:
        return DataError(name, position, None, _describe_json_error(e))
    except NotJSON as e:
        return DataError(name, position, None, f"not valid JSON: {e}")
    if not isinstance(value, dict):
        return DataError(name, position, None,
                         f"expected a JSON object {{...}} on each line, found {describe(value)}")
    return Record(position, value)


def _iter_jsonl(fh: IO[bytes], name: str) -> Iterator[Record | DataError]:
    for number, line, error in decoded_lines(fh, name):
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
        yield from (e for _, _, e in decoded_lines(io.BytesIO(raw), name) if e is not None)
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
    except NotJSON as e:
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
