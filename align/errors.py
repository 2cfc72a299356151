"""User-facing errors: the CLI prints their message (no traceback) and exits with code 2.

:func:`os_problem` puts what the operating system refused (a read-only directory, a full disk,
a missing permission) into words, including the errors torch and safetensors raise for a full
disk, which never mention space.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path


class AlignError(Exception):
    """An error the user can fix (bad flag, bad data, missing file).

    The message must say what is wrong and what to do about it.
    """

    exit_code = 2


# What a full disk looks like in messages that lost the errno (safetensors, wrapped errors).
_DISK_FULL = ("No space left on device", "StorageFull", "os error 28", "Disk quota exceeded")
_NEARLY_FULL = 64 << 20  # torch's writer says only `unexpected pos ...` or `file write failed`


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return seen


def _free_space(path: Path) -> int | None:
    for p in (path, *path.parents):
        try:
            return shutil.disk_usage(p).free
        except OSError:
            continue
    return None


def os_problem(error: BaseException, path: str | Path, what: str,
               size: int | None = None, writing: bool = True) -> str | None:
    """One line for an error of the operating system met while writing ``what`` under
    ``path`` (``size``: bytes being written, when known); None when ``error`` is not one.

    torch's checkpoint writer reports a full disk without an errno (``[enforce fail at
    inline_container.cc] unexpected pos ...``), so an error met while ``writing`` on a disk
    with less free space than was being written (or under 64 MB) counts as a full disk."""
    path = Path(path)
    codes = {e.errno for e in _chain(error) if isinstance(e, OSError) and e.errno}
    text = " ".join(str(e) for e in _chain(error))
    free = _free_space(path)
    said_full = bool(codes & {errno.ENOSPC, errno.EDQUOT}) or any(m in text for m in _DISK_FULL)
    if not said_full and errno.EROFS in codes:  # a read-only mount may show little free space
        return f"cannot write {what}: {path} is on a read-only file system; choose another " \
               "--output-dir"
    if not said_full and codes & {errno.EACCES, errno.EPERM}:
        return f"cannot write {what}: permission denied in {path}; choose a directory you can " \
               "write to with --output-dir"
    if said_full or (writing and free is not None and free < max(size or 0, _NEARLY_FULL)):
        need = f" (about {human_size(size)})" if size else ""
        left = f"; {human_size(free)} free there" if free is not None else ""
        return (f"no space left on the disk of {path} while writing {what}{need}{left}. Free "
                "some space (old checkpoints, --save-total-limit) or choose another "
                "--output-dir, then continue with --resume")
    return None
