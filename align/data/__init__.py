"""The shared dataset layer: read (io), validate and normalise (formats), convert (convert)."""

from __future__ import annotations

import os

from align.data.formats import FORMATS, TRL_NAMES, Validated, validate
from align.data.io import DataError, read_records
from align.errors import AlignError

__all__ = ["FORMATS", "TRL_NAMES", "DataError", "DataValidationError", "Validated", "load",
           "load_valid", "read_records", "validate"]


class DataValidationError(AlignError):
    """Raised by :func:`load_valid`; the message lists the first errors and a count."""

    def __init__(self, result: Validated) -> None:
        self.result = result
        n = len(result.errors)
        super().__init__(f"{result.file}: {n} problem{'s' if n != 1 else ''} in the "
                         f"{result.format} data:\n{result.error_report()}")


def load(path: str | os.PathLike, fmt: str, columns: str | dict | None = None) -> Validated:
    """Read and validate ``path`` as format ``fmt``; errors are collected, not raised."""
    records, read_errors, _kind = read_records(path, columns)
    return validate(records, fmt, str(path), read_errors)


def load_valid(path: str | os.PathLike, fmt: str, columns: str | dict | None = None) -> Validated:
    """Like :func:`load`, but raise :class:`DataValidationError` (exit code 2) on any error."""
    result = load(path, fmt, columns)
    if not result.ok:
        raise DataValidationError(result)
    return result
