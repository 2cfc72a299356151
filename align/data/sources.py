"""Where records come from: what ``--dataset`` (and ``--eval-dataset``) may name.

- a file: .jsonl, .json, .csv/.tsv, .parquet, optionally compressed (.gz, .bz2, .xz, .zst,
  .lz4) or in a .zip (read by :mod:`align.data.io`, with line-level errors);
- a directory written by ``datasets``' ``save_to_disk`` (a Dataset, or a DatasetDict whose
  split ``--dataset-split`` names);
- any other directory: a local dataset repository (data files, shards like
  ``data/train-00000-of-00002.parquet``, a README card with ``configs``), read by
  ``datasets.load_dataset`` exactly as a Hub dataset is;
- a Hugging Face Hub dataset id (``org/name``), read by ``datasets.load_dataset`` with
  ``--dataset-config`` and ``--dataset-split``.

As in ``datasets``, an existing path wins over a Hub id of the same spelling. A source with
several splits and no ``--dataset-split`` uses ``train`` if it has one (or its only split), and
otherwise is refused with the list of splits.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from align.data.csv import coerce_csv_cells
from align.data.io import SUFFIXES, check_readable, data_suffix, iter_file, rename
from align.data.records import DataError, Record
from align.errors import AlignError

ARROW_BATCH = 1000
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass
class Read:
    """One record as the data layer reads it (:meth:`Source.records`)."""

    position: str
    raw: dict[str, Any]  # as the source holds it (CSV cells parsed when no --columns is given)
    data: dict[str, Any]  # columns renamed (--columns), CSV cells parsed
    errors: list[DataError]  # CSV cells that look like chat messages but cannot be read


@dataclass
class Source:
    """A resolved dataset source; :meth:`records` yields its records (renamed, CSV cells
    parsed) and read errors, :meth:`items` the records as they are."""

    spec: str  # what the user wrote
    kind: str  # "file", "files" (a folder read file by file), "saved", "folder", "hub"
    name: str  # how messages call it: the path, or "org/name (split train)"
    csv: bool = False  # cells are text: parse structures, labels, numbers
    dataset: Any = None  # the datasets.Dataset of saved/folder/hub sources
    files: tuple[str, ...] = ()  # the data files behind a folder's split, for error reports

    def items(self) -> Iterator[Record | DataError]:
        if self.kind == "file":
            yield from iter_file(self.spec, self.name)
            return
        if self.kind == "files":  # a folder datasets could not read: each file, line by line
            for f in self.files:
                rel = os.path.relpath(f, self.spec)
                for item in iter_file(f, f):
                    if isinstance(item, Record):
                        item.position = f"{rel}, {item.position}"
                    yield item
            return
        ds = self.dataset
        if ds.num_rows == 0:
            yield DataError(self.name, None, None, "the split holds no records")
        index = 0
        for batch in ds.iter(batch_size=ARROW_BATCH):
            for values in zip(*batch.values()):
                yield Record(f"index {index} (record {index + 1})", dict(zip(batch, values)))
                index += 1


    def records(self, mapping: dict[str, str]) -> Iterator[Read | DataError]:
        """Every record read -> renamed by ``mapping`` (:func:`align.data.io.parse_columns`)
        -> CSV cells parsed (:func:`align.data.csv.coerce_csv_cells`): the one loop that
        loading, validating and converting data share."""
        for item in self.items():
            if isinstance(item, DataError):
                yield item
                continue
            data = rename(item.data, mapping)
            problems = coerce_csv_cells(data) if self.csv else []
            yield Read(item.position, item.data, data,
                       [DataError(self.name, item.position, f, m) for f, m in problems])


def open_source(spec: str, split: str | None = None, config: str | None = None,
                flag: str = "--dataset") -> Source:
    """Resolve ``spec`` (path or Hub id) into a :class:`Source`; AlignError when it cannot be
    read, in one line naming ``flag``, the spec and what to do."""
    path = Path(spec).expanduser()
    if path.is_file():
        if split or config:
            raise AlignError(f"{flag} {spec} is a single file: it has no splits or configs "
                             f"(drop {flag}-split / --dataset-config)")
        check_readable(path, spec)
        return Source(spec, "file", spec, csv=data_suffix(path)[0] in (".csv", ".tsv"))
    if path.is_dir():
        if _is_saved(path):
            return _saved(spec, path, split, flag)
        return _with_datasets(spec, str(path), split, config, flag, local=True)
    if not _looks_like_hub_id(spec):
        raise AlignError(f"{spec}: no such file or directory")
    return _with_datasets(spec, spec, split, config, flag, local=False)


def _looks_like_hub_id(spec: str) -> bool:
    if spec.startswith((".", "/", "~")) or "\\" in spec or not HUB_ID.match(spec):
        return False
    suffix = data_suffix(Path(spec))[0]
    return suffix not in (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".zip")


def _is_saved(path: Path) -> bool:
    return any((path / f).exists() for f in ("dataset_info.json", "dataset_dict.json",
                                               "state.json"))


def _pick_split(splits: list[str], split: str | None, where: str, flag: str) -> str:
    if split is not None:
        if split not in splits:
            raise AlignError(f"{where} has no split '{split}' (splits: {', '.join(splits)}); "
                             f"pick one with {flag}-split")
        return split
    if "train" in splits:
        return "train"
    if len(splits) == 1:
        return splits[0]
    raise AlignError(f"{where} has several splits and none is 'train' (splits: "
                     f"{', '.join(splits)}); pick one with {flag}-split, e.g. "
                     f"{flag}-split {splits[0]}")


def _saved(spec: str, path: Path, split: str | None, flag: str) -> Source:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:
        raise AlignError(f"{spec}: cannot load the saved dataset ({_one_line(e)})") from e
    if isinstance(ds, datasets.DatasetDict):
        chosen = _pick_split(list(ds), split, f"{spec} (a saved DatasetDict)", flag)
        return Source(spec, "saved", f"{spec} (split {chosen})", dataset=ds[chosen])
    if split is not None:
        raise AlignError(f"{flag} {spec} is a saved Dataset without splits; drop {flag}-split")
    return Source(spec, "saved", spec, dataset=ds)


def _with_datasets(spec: str, path: str, split: str | None, config: str | None, flag: str,
                   *, local: bool) -> Source:
    """A local dataset repository or a Hub dataset, through ``datasets.load_dataset``."""
    import datasets

    what = f"{spec}{f' (config {config})' if config else ''}"
    try:
        splits = datasets.get_dataset_split_names(path, config)
        chosen = _pick_split(splits, split, what, flag)
    except AlignError:
        raise
    except Exception as e:
        raise _load_error(spec, config, flag, e, local) from e
    name = f"{what} (split {chosen})"
    files: tuple[str, ...] = ()
    if local:
        try:
            builder = datasets.load_dataset_builder(path, config)
            files = tuple(str(f) for f in (builder.config.data_files or {}).get(chosen, []))
        except Exception:  # only used to read the files ourselves when datasets cannot
            files = ()
    csv = any(data_suffix(Path(f))[0] in (".csv", ".tsv") for f in files)
    try:
        ds = datasets.load_dataset(path, config, split=chosen)
    except Exception as e:
        if local and files and all(data_suffix(Path(f))[0] in SUFFIXES for f in files):
            # datasets stops at the first bad line with a message about Arrow; read the files
            # ourselves to say which line of which file is wrong, and why
            return Source(path, "files", name, csv=csv, files=files)
        raise _load_error(spec, config, flag, e, local) from e
    return Source(spec, "folder" if local else "hub", name, csv=csv, dataset=ds, files=files)


def _load_error(spec: str, config: str | None, flag: str, e: Exception, local: bool
                ) -> AlignError:
    text = _one_line(e)
    if "onfig name is missing" in text or "BuilderConfig" in text and "not found" in text:
        configs = re.findall(r"\[(.*?)\]", text)
        listed = f" ({configs[-1]})" if configs else ""
        return AlignError(f"{flag} {spec}: choose a config with --dataset-config{listed}")
    if local:
        return AlignError(f"{spec}: not a file, a save_to_disk directory or a dataset folder "
                          f"that datasets.load_dataset can read ({text})")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on") or \
        os.environ.get("HF_DATASETS_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if offline or "OfflineModeIsEnabled" in text:
        return AlignError(f"{flag} {spec}: no such file or directory, and HF_HUB_OFFLINE=1 stops "
                          "align from fetching it as a dataset from the Hugging Face Hub; unset "
                          "HF_HUB_OFFLINE (or download it first), or give a local path")
    return AlignError(f"{flag} {spec}: no such file or directory, and the Hugging Face Hub has no "
                      f"dataset by that id that datasets can read ({text})")


def _one_line(e: Exception) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 300 else text[:297] + "..."


def source_columns(source: Source) -> list[str]:
    """The column names of an Arrow-backed source (empty for files: read the first record)."""
    return list(source.dataset.column_names) if source.dataset is not None else []
