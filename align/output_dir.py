"""The output directory of one run: locked, never silently reused, never an input's.

``--output-dir`` holds ``align_config.yaml`` (the resolved config, written once by the run
that created the directory), ``metrics.jsonl``, ``tensorboard/``, the checkpoints
(:mod:`align.checkpoints`), ``resumes.jsonl`` (one line per resume) and, once the run has
finished, the final model and ``final_metrics.json``. :func:`open_output_dir`:

1. refuses an output dir equal to or inside the ``--model``, ``--ref-model``,
   ``--reward-model`` or ``--value-model`` directory (the run would overwrite what it reads);
2. creates it, and locks it for this run (an ``fcntl`` lock the OS releases when the process
   dies): a second run into it is refused at once;
3. with ``--resume``: takes the newest complete checkpoint, checks the config against it,
   moves incomplete checkpoints aside and says so; without: refuses a directory that holds a
   run (or anything else) unless ``--overwrite-output-dir``, which deletes the earlier run
   first (and refuses when an input of this run lives inside it).

A run that fails before training removes what it made (:meth:`OutputDir.discard_if_unstarted`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from align.checkpoints import (DELETING, Checkpoint, check_resume_config, latest, move_aside,
                               scan, writing)
from align.errors import AlignError
from align.plan import world_rank

CONFIG_FILE = "align_config.yaml"
FINAL_FILE = "final_metrics.json"
LOCK_FILE = ".align.lock"
RESUMES_FILE = "resumes.jsonl"  # one line per --resume: from which checkpoint, what changed
MODEL_FLAGS = ("--model", "--ref-model", "--reward-model", "--value-model")
_RUN_FILES = (CONFIG_FILE, "metrics.jsonl", FINAL_FILE)
WATCH_FILES = ("align_status.json", "console.log")  # align.run_status: not training output


def _inside(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _holds_run(out: Path) -> bool:
    return any((out / f).exists() for f in _RUN_FILES) or bool(sum(map(len, scan(out))))


def _entries(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.name != LOCK_FILE) if out.is_dir() else []


@dataclass
class OutputDir:
    """The locked output directory of one run; see the module docstring (rule 5)."""

    path: Path
    created: bool  # made (or found empty) by this run: removed again if training never starts
    made: Path | None = None  # the topmost directory this run created (``path`` or a parent)
    lock_fd: int | None = None
    resume_from: Checkpoint | None = None
    changes: list[tuple[str, Any, Any]] = field(default_factory=list)

    def started(self) -> bool:
        """Did training write anything (a metrics row, a checkpoint, a model)?"""
        for p in _entries(self.path):
            if p.name in (CONFIG_FILE, *WATCH_FILES) or (
                    p.name == "metrics.jsonl" and p.stat().st_size == 0):
                continue
            if p.is_dir() and not any(p.iterdir()):
                continue
            return True
        return False

    def discard_if_unstarted(self) -> None:
        """After a failure before training: leave no half-made directory behind."""
        if self.created and not self.started():
            for p in _entries(self.path):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
            (self.path / LOCK_FILE).unlink(missing_ok=True)
            made = self.made if self.made is not None and self.made != self.path else None
            if made is not None:
                shutil.rmtree(made, ignore_errors=True)  # the parents it made: empty but out
            elif self.made == self.path:
                try:
                    self.path.rmdir()
                except OSError:
                    pass

    def release(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # also releases the flock
            self.lock_fd = None


def _lock(out: Path) -> int | None:
    """An exclusive lock on ``out`` for this process (released by the OS when it dies)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; runs are not guarded against each other
        return None
    path = out / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = path.read_text(encoding="utf-8", errors="replace").strip() or "unknown"
        os.close(fd)
        raise AlignError(f"{out} is in use by another align run ({holder}); wait for it to "
                         "finish, or choose another --output-dir") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {os.uname().nodename} since "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
    return fd


def _check_inputs(out: Path, inputs: dict[str, str], overwrite: bool) -> None:
    resolved = {flag: Path(p).expanduser().resolve() for flag, p in inputs.items()
                if p and Path(p).expanduser().exists()}
    for flag, p in resolved.items():
        model_dir = p if p.is_dir() else None
        if flag in MODEL_FLAGS and model_dir is not None and _inside(out, model_dir):
            where = "is" if out == model_dir else "is inside"
            raise AlignError(f"--output-dir {out} {where} the {flag} directory {model_dir}: the "
                             "run would overwrite the model it reads; choose another "
                             "--output-dir")
        if overwrite and _inside(p, out):
            raise AlignError(f"--overwrite-output-dir would delete {out}, which holds {flag} "
                             f"{p}; choose another --output-dir")


def _make(out: Path) -> Path | None:
    """Create ``out`` (and parents); return the topmost directory this made, ``out`` itself
    when it was there but empty, None when it held something."""
    if out.exists() and not out.is_dir():
        raise AlignError(f"--output-dir {out} is a file, not a directory")
    top = out
    while not top.parent.exists():
        top = top.parent
    made = top if not out.exists() else out if not _entries(out) else None
    with writing(top.parent, f"the output directory {out}"):
        out.mkdir(parents=True, exist_ok=True)
        (out / LOCK_FILE).touch()  # writable? (an error here is put into words by writing())
    return made


def _clear(out: Path) -> None:
    entries = _entries(out)
    click.echo(f"--overwrite-output-dir: deleting the earlier run in {out} "
               f"({', '.join(p.name for p in entries[:6])}{' ...' if len(entries) > 6 else ''})",
               err=True)
    for p in entries:
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def _resume_point(out: Path, cfg: Any) -> tuple[Checkpoint, list[tuple[str, Any, Any]]]:
    complete, incomplete = scan(out)
    if not complete:
        skipped = f" (only incomplete ones: {', '.join(p.name for p in incomplete)})" \
            if incomplete else ""
        raise AlignError(f"--resume: no complete checkpoint in {out}{skipped}; drop --resume "
                         "to start a new run (with --overwrite-output-dir to replace this one)")
    ckpt = complete[-1]
    changes = check_resume_config(ckpt, cfg)
    for doomed in out.glob(DELETING + "*"):  # a rotation killed half-way: finish it
        shutil.rmtree(doomed, ignore_errors=True)
    moved = move_aside(incomplete)
    for old, new in zip(incomplete, moved):
        click.echo(f"--resume: skipped {old.name}: incomplete (cut short while it was written); "
                   f"moved it to {new.name}", err=True)
    for k, old_value, new_value in changes:
        click.echo(f"--resume: --{k.replace('_', '-')} changes from {old_value!r} to "
                   f"{new_value!r} (--resume-allow-change)", err=True)
    return ckpt, changes


def open_output_dir(cfg: Any, inputs: dict[str, str]) -> OutputDir:
    """Prepare --output-dir for this run (rule 5 of the module docstring): create and lock it,
    then resume (newest complete checkpoint, config check), replace (--overwrite-output-dir)
    or refuse a directory that holds a run. ``inputs`` maps flags to the paths the run reads.

    In a multi-process launch only global rank 0 checks, locks and writes; the other ranks
    only find the checkpoint to resume from."""
    t = cfg.train
    if not t.output_dir:
        if t.resume:
            raise AlignError("--resume needs --output-dir (the run to continue)")
        t.output_dir = f"runs/{cfg.algo_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(t.output_dir).expanduser().resolve()
    t.output_dir = str(out)
    if world_rank() != 0:
        out.mkdir(parents=True, exist_ok=True)
        return OutputDir(out, created=False, resume_from=latest(out) if t.resume else None)
    _check_inputs(out, inputs, t.overwrite_output_dir)
    if t.resume and not out.is_dir():
        raise AlignError(f"--resume: no complete checkpoint in {out} (no such directory); "
                         "drop --resume to start a new run")
    made = _make(out)
    handle = OutputDir(out, created=made is not None, made=made)
    try:
        handle.lock_fd = _lock(out)
        if t.resume:
            handle.resume_from, handle.changes = _resume_point(out, cfg)
        elif _holds_run(out):
            if not t.overwrite_output_dir:
                last = latest(out)
                state = "a finished run" if (out / FINAL_FILE).exists() else \
                    f"an unfinished run (last checkpoint {last.path.name})" if last else \
                    "an earlier run"
                raise AlignError(f"{out} holds {state}; pass --resume to continue it, "
                                 "--overwrite-output-dir to replace it, or choose another "
                                 "--output-dir")
            _clear(out)
            handle.created = True
        elif _entries(out) and not t.overwrite_output_dir:
            names = ", ".join(p.name for p in _entries(out)[:3])
            raise AlignError(f"--output-dir {out} is not empty ({names}, ...); choose a new or "
                             "empty directory, or pass --overwrite-output-dir to write into it")
    except BaseException:
        handle.discard_if_unstarted()
        handle.release()
        raise
    return handle


def note_resume(out: Path, ckpt: Checkpoint, changes: list[tuple[str, Any, Any]]) -> None:
    """Append this resume to ``resumes.jsonl`` (align_config.yaml keeps the original run)."""
    row = {"time": round(time.time(), 3), "from": ckpt.path.name, "step": ckpt.step,
           "changes": {k: [old, new] for k, old, new in changes}}
    with open(out / RESUMES_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, default=str) + "\n")
