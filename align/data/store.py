"""Validated rows on disk, in Arrow: written batch by batch, read back memory-mapped.

:func:`align.data.load` streams a source through the validator into a :class:`RowWriter`, so a
large file is never held in memory as Python objects; the trainers get the same Arrow data as
a ``datasets.Dataset`` (:attr:`Rows.dataset`), as if ``datasets`` had read the file itself.

The files live in a private folder under the align cache (``$ALIGN_CACHE/tmp``, on disk like
``datasets``' own cache, not in a RAM-backed /tmp) and are removed when the process exits;
folders of processes that died are removed by the next one.

Arrow needs one type per column. Records of one source agree on the format's fields (the
validator sees to that), but extra columns and message dicts vary: a column first seen in a
later batch, a message key only some messages have (``tool_calls``), numbers mixed with text in
a hand-written ``solution`` column. The writer widens its schema when a batch brings something
new (struct fields are unioned, ints become floats, scalars mixed with text become text) and
re-casts what it has written, which is rare and happens early in a file.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Iterator

from align.cache import cache_dir
from align.errors import AlignError

BATCH_ROWS = 1000
_WORK_DIR: Path | None = None
_JSON = json.JSONEncoder(ensure_ascii=False)  # one encoder for every message (json.dumps
# builds a new one per call when given options)


def work_dir() -> Path:
    """This process's folder for row files, created on first use and removed at exit."""
    global _WORK_DIR
    if _WORK_DIR is None:
        root = cache_dir() / "tmp"
        root.mkdir(parents=True, exist_ok=True)
        _remove_orphans(root)
        _WORK_DIR = Path(tempfile.mkdtemp(prefix=f"rows-{_host()}-{os.getpid()}-", dir=root))
        atexit.register(shutil.rmtree, _WORK_DIR, True)
    return _WORK_DIR


def _host() -> str:
    return "".join(c for c in socket.gethostname() if c.isalnum()) or "host"


def _remove_orphans(root: Path) -> None:
    """Remove the folders of processes of this machine that no longer run (a killed run
    leaves its folder behind). A cache shared by several machines keeps the others'."""
    for folder in root.glob(f"rows-{_host()}-*-*"):
        try:
            os.kill(int(folder.name.split("-")[2]), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, PermissionError, IndexError):
            pass


class RowWriter:
    """Append rows (dicts) to one Arrow stream file; :meth:`close` returns :class:`Rows`."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkstemp(suffix=".arrow", dir=work_dir())[1])
        self.schema: Any = None
        self._writer: Any = None
        self._pending: list[dict[str, Any]] = []
        self.count = 0
        self.digest = hashlib.sha256()

    def add(self, row: dict[str, Any]) -> None:
        self._pending.append(row)
        if len(self._pending) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        import pyarrow as pa

        table = _table(self._pending)
        self._pending = []
        if self.schema is None:
            self.schema = table.schema
        elif not table.schema.equals(self.schema):
            merged = _unify(self.schema, table.schema)
            if not merged.equals(self.schema):
                self._rewrite(merged)
            table = _conform(table, self.schema)
        if self._writer is None:
            self._writer = pa.ipc.new_stream(str(self.path), self.schema)
        for batch in table.to_batches():
            self._writer.write_batch(batch)
            self.digest.update(batch.serialize())
        self.count += table.num_rows

    def _rewrite(self, schema: Any) -> None:
        """Re-cast what was written to a wider schema (a new column, a new struct field)."""
        import pyarrow as pa

        self.schema = schema
        if self._writer is None:
            return
        self._writer.close()
        old, self.path = self.path, Path(tempfile.mkstemp(suffix=".arrow", dir=work_dir())[1])
        self._writer = pa.ipc.new_stream(str(self.path), schema)
        with pa.memory_map(str(old)) as source:
            for batch in pa.ipc.open_stream(source):
                table = _conform(pa.Table.from_batches([batch]), schema)
                for b in table.to_batches():
                    self._writer.write_batch(b)
        old.unlink()

    def close(self) -> "Rows":
        import pyarrow as pa

        self.flush()
        if self._writer is None:  # no rows at all
            self._writer = pa.ipc.new_stream(str(self.path), self.schema or pa.schema([]))
        self._writer.close()
        return Rows.from_file(self.path, self.digest.hexdigest()[:24])


def _table(rows: list[dict[str, Any]]) -> Any:
    """One Arrow table from dicts that may lack keys.

    Columns holding objects (chat messages, tool calls, rated completions) are stored as
    ``datasets``' ``Json`` type, one JSON document per message: each message comes back exactly
    as written, without the null keys a struct column would give every message that lacks one
    of another's keys. A column of mixed scalars becomes float (ints and floats) or text
    (anything with text), as ``datasets`` readers would make it.
    """
    import pyarrow as pa

    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    arrays = {}
    for name in names:
        values = [row.get(name) for row in rows]
        if any(_holds_objects(v) for v in values):
            arrays[name] = _json_column(values)
            continue
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            arrays[name] = pa.array(_uniform(values))
    return pa.table(arrays)


def _holds_objects(value: Any) -> bool:
    return isinstance(value, dict) or (isinstance(value, list) and
                                       any(isinstance(v, (dict, list)) for v in value))


def _json_column(values: list[Any]) -> Any:
    """Lists (of messages) as ``List(Json())``; anything else as ``Json()``."""
    import pyarrow as pa

    if all(v is None or isinstance(v, list) for v in values):
        items = [_JSON.encode(item) for v in values if v is not None for item in v]
        offsets, n = [0], 0
        mask = []
        for v in values:
            n += len(v) if v is not None else 0
            offsets.append(n)
            mask.append(v is None)
        storage = pa.ExtensionArray.from_storage(pa.json_(), pa.array(items, pa.string()))
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), storage,
                                        mask=pa.array(mask) if any(mask) else None)
    encoded = [None if v is None else _JSON.encode(v) for v in values]
    return pa.ExtensionArray.from_storage(pa.json_(), pa.array(encoded, pa.string()))


def _uniform(values: list[Any]) -> list[Any]:
    present = [v for v in values if v is not None]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return [None if v is None else float(v) for v in values]
    return [None if v is None else str(v) for v in values]


def _unify(old: Any, new: Any) -> Any:
    import pyarrow as pa

    try:
        return pa.unify_schemas([old, new], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, NotImplementedError):
        pass
    fields = {f.name: f for f in old}
    for f in new:
        if f.name not in fields:
            fields[f.name] = f
            continue
        try:
            fields[f.name] = pa.unify_schemas([pa.schema([fields[f.name]]), pa.schema([f])],
                                              promote_options="permissive").field(f.name)
        except (pa.ArrowInvalid, pa.ArrowTypeError, NotImplementedError) as e:
            scalar = not any(pa.types.is_nested(t) for t in (fields[f.name].type, f.type))
            if not scalar:
                raise AlignError(f"column '{f.name}' holds values of different nested types "
                                 f"in different records ({fields[f.name].type} and {f.type}), "
                                 "which one Arrow column (what datasets and TRL read) cannot "
                                 "store; give the column one type in every record") from e
            fields[f.name] = pa.field(f.name, pa.string())  # e.g. "2" in one record, 4 in another
    return pa.schema(list(fields.values()))


def _conform(table: Any, schema: Any) -> Any:
    """``table`` with every column of ``schema`` (missing ones null), cast to its types."""
    import pyarrow as pa

    columns = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            columns.append(col if col.type.equals(f.type) else col.cast(f.type))
        else:
            columns.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=schema)


class Rows(Sequence):
    """Validated rows backed by an Arrow file: ``len``, ``rows[i]`` (a dict), slices (lists of
    dicts) and iteration (batch by batch), and :attr:`dataset` for the trainers."""

    def __init__(self, dataset: Any, digest: str) -> None:
        self.dataset = dataset
        self.digest = digest  # of the content: names on-disk copies (align.algos.common)

    @classmethod
    def from_file(cls, path: Path, digest: str) -> "Rows":
        from datasets import Dataset

        return cls(Dataset.from_file(str(path), in_memory=False), digest)

    def __len__(self) -> int:
        return self.dataset.num_rows

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return list(self._iter(range(len(self))[index]))
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"row {index} of {n}")
        return self.dataset[index % n]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._iter(range(len(self)))

    def _iter(self, indices: range) -> Iterator[dict[str, Any]]:
        if indices.step != 1:
            yield from (self.dataset[i] for i in indices)
            return
        for start in range(indices.start, indices.stop, BATCH_ROWS):
            batch = self.dataset[start:min(start + BATCH_ROWS, indices.stop)]  # decoded columns
            yield from (dict(zip(batch, values)) for values in zip(*batch.values()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Rows):
            return self.digest == other.digest
        return isinstance(other, list) and list(self) == other

    __hash__ = None  # type: ignore[assignment]

    def column(self, name: str) -> list[Any]:
        """One column's values (absent column: all None)."""
        if name not in self.dataset.column_names:
            return [None] * len(self)
        return list(self.dataset[name])

    def __repr__(self) -> str:
        return f"Rows({len(self)} rows, columns {self.dataset.column_names})"


def as_dataset(rows: Any) -> Any:
    """A ``datasets.Dataset`` of validated rows: the Arrow data itself for :class:`Rows`
    (no copy), a Dataset as it is, built from a list otherwise."""
    from datasets import Dataset

    if isinstance(rows, Rows):
        return rows.dataset
    if isinstance(rows, Dataset):
        return rows
    return Dataset.from_list(list(rows))


def select(rows: Any, indices: list[int]) -> Any:
    """The rows at ``indices``, in that order: :class:`Rows` again (no copy of the data, a new
    content digest), or a list for a list."""
    if not isinstance(rows, Rows):
        return [rows[i] for i in indices]
    digest = hashlib.sha256(f"{rows.digest}:{indices}".encode()).hexdigest()[:24]
    return Rows(rows.dataset.select(indices), digest)


def content_digest(rows: Any) -> str:
    """A digest of the rows' content: :attr:`Rows.digest`, or a hash of a list's JSON."""
    if isinstance(rows, Rows):
        return rows.digest
    return hashlib.sha256(json.dumps(list(rows), sort_keys=True, ensure_ascii=False, default=str)
                          .encode("utf-8")).hexdigest()[:24]
