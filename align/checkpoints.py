"""The one home of checkpoint directories and of the output directory that holds them.

A run's ``--output-dir`` holds ``checkpoint-N/`` directories next to its config, metrics and,
when the run finished, the final model (:mod:`align.output_dir`). The rules, for PPO and every
TRL-backed algorithm alike:

1. **complete or ignored**: a checkpoint counts only when ``align_checkpoint.json`` is in it.
   That marker is written last (after every other file of the checkpoint is fsync'd; itself
   written to a temporary name, fsync'd and renamed), and lists each file with its size, so a
   checkpoint cut short by a kill, a full disk or a crash is never taken for a complete one.
   The marker also records the run's resolved config and data hash, and whether the health
   monitor was quiet when it was saved (the checkpoints a rollback may return to).
2. **latest**: ``--resume`` continues from the newest complete checkpoint, moves incomplete ones
   aside (``incomplete-checkpoint-N``, never deleted silently) and says so.
3. **rotation** (``--save-total-limit``) deletes the oldest complete checkpoints, never the
   newest healthy one, never for an incomplete one; a deleted checkpoint is renamed first, so it
   disappears at once.
4. **resume config check**: ``--resume`` refuses a change of any flag that defines the run (and
   of the training data's content) and names each, unless ``--resume-allow-change`` lists it;
   flags that only say where and how often to write, how to watch the run, or how to save
   memory may change.

The output directory around the checkpoints (its lock, what may be written into it, and which
checkpoint a resume starts from) is :mod:`align.output_dir`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from align.errors import AlignError, os_problem

PREFIX = "checkpoint-"  # checkpoint-N, as transformers' Trainer names them too
CHECKPOINT_RE = re.compile(rf"^{PREFIX}(\d+)(\.tmp)?$")
MARKER = "align_checkpoint.json"
_ASIDE, DELETING = "incomplete-", ".deleting-"  # moved aside; being deleted


@dataclass
class Checkpoint:
    """A complete checkpoint directory and its marker's record."""

    path: Path
    step: int
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return bool(self.record.get("healthy", True))


# --- complete or ignored --------------------------------------------------------------------
def checkpoint_name(step: int) -> str:
    """``checkpoint-{step}``: the one place the name is built."""
    return f"{PREFIX}{step}"


def checkpoint_dir(out: str | Path, step: int) -> Path:
    """The directory of checkpoint ``step`` in the output dir ``out``."""
    return Path(out) / checkpoint_name(step)


def step_of(path: Path) -> int | None:
    m = CHECKPOINT_RE.match(path.name)
    return int(m.group(1)) if m else None


def read_marker(path: Path) -> dict[str, Any] | None:
    """The marker's record when ``path`` is a complete checkpoint (every listed file present
    with its size), else None."""
    try:
        record = json.loads((path / MARKER).read_text(encoding="utf-8"))
        files = record["files"]
        for name, size in files.items():
            if (path / name).stat().st_size != size:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return record


def scan(out: Path) -> tuple[list[Checkpoint], list[Path]]:
    """(complete checkpoints oldest first, incomplete checkpoint directories) in ``out``."""
    complete, incomplete = [], []
    if not out.is_dir():
        return [], []
    for p in out.iterdir():
        step = step_of(p)
        if step is None or not p.is_dir():
            continue
        record = None if p.name.endswith(".tmp") else read_marker(p)
        if record is None:
            incomplete.append(p)
        else:
            complete.append(Checkpoint(p, step, record))
    return sorted(complete, key=lambda c: c.step), sorted(incomplete)


def latest(out: Path, healthy: bool = False) -> Checkpoint | None:
    """The newest complete checkpoint (with ``healthy``: saved while no detector's streak ran)."""
    found = [c for c in scan(Path(out))[0] if c.healthy or not healthy]
    return found[-1] if found else None


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    _fsync(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _files(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_size
            for p in sorted(path.rglob("*")) if p.is_file() and p.name != MARKER}


def mark_complete(path: Path, step: int, run: dict[str, Any], healthy: bool = True) -> None:
    """Make ``path`` count as checkpoint ``step``: fsync its files, then write the marker
    (temporary name, fsync, rename, fsync of the directory). ``run`` is :func:`run_record`."""
    files = _files(path)
    for name in files:
        _fsync(path / name)
    for d in {path, *(path / n for n in files)}:
        if d.is_dir():
            _fsync(d)
    record = {"step": step, "time": round(time.time(), 3), "healthy": healthy,
              "files": files, **run}
    tmp = path / (MARKER + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(record, fh, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path / MARKER)
    _fsync(path)


def remove(path: Path) -> None:
    """Delete a checkpoint so that it disappears at once: rename, then delete the files (a kill
    half-way leaves a ``.deleting-`` directory, never a checkpoint with files missing)."""
    doomed = path.with_name(DELETING + path.name)
    if doomed.exists():
        shutil.rmtree(doomed)
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def rotate(out: Path, limit: int | None) -> list[int]:
    """Delete the oldest complete checkpoints beyond ``limit``; the newest healthy one always
    stays (a rollback's target). Returns the deleted steps."""
    if not limit:
        return []
    complete = scan(out)[0]
    keep = {c.step for c in complete[-limit:]}
    healthy = [c for c in complete if c.healthy]
    if healthy:
        keep.add(healthy[-1].step)
    deleted = [c.step for c in complete if c.step not in keep]
    for c in complete:
        if c.step not in keep:
            remove(c.path)
    return deleted


def drop_after(out: Path, step: int) -> list[int]:
    """Delete the complete checkpoints saved after ``step`` (a rollback leaves the collapsed
    ones behind, and --resume must not pick them up). Returns their steps."""
    dropped = [c.step for c in scan(out)[0] if c.step > step]
    for s in dropped:
        remove(checkpoint_dir(out, s))
    return dropped


def move_aside(paths: list[Path], prefix: str = _ASIDE) -> list[Path]:
    """Rename checkpoints out of the way, e.g. ``incomplete-checkpoint-N`` (``-2``, ... when
    taken): resume and rotation no longer see them, and nothing is deleted."""
    moved = []
    for p in paths:
        target = p.with_name(prefix + p.name)
        n = 2
        while target.exists():
            target = p.with_name(f"{prefix}{p.name}-{n}")
            n += 1
        os.replace(p, target)
        moved.append(target)
    return moved


def checkpoint_size(out: Path) -> int | None:
    """Bytes of the newest complete checkpoint (what the next one will roughly need)."""
    last = latest(out)
    return sum(last.record["files"].values()) if last else None


@contextmanager
def writing(out: str | Path, what: str, size: int | None = None) -> Iterator[None]:
    """Turn what the OS refuses while writing ``what`` (a full disk, a read-only or forbidden
    directory) into an AlignError that says so, with the size being written."""
    try:
        yield
    except AlignError:
        raise
    except Exception as e:
        message = os_problem(e, out, what, size or checkpoint_size(Path(out)))
        if message is None:
            raise
        last = latest(Path(out))
        if last is not None:
            message += f" (the last complete checkpoint is {last.path.name})"
        raise AlignError(message) from e


# --- the run record and the resume config check ---------------------------------------------
def _path_fields(cfg: Any) -> set[str]:
    import dataclasses

    from align.config import PATH_METAVARS

    return {f.name for g in cfg.groups().values() for f in dataclasses.fields(g)
            if f.metadata.get("metavar") in PATH_METAVARS}


def _normal(value: Any) -> Any:
    """A local path as an absolute one (so a resume from another directory compares equal)."""
    if isinstance(value, str) and value and Path(value).expanduser().exists():
        return str(Path(value).expanduser().resolve())
    return value


def run_record(cfg: Any) -> dict[str, Any]:
    """What each checkpoint records about the run: the resolved config (local paths absolute)
    and the training data's content hash."""
    paths = _path_fields(cfg)
    config = {k: _normal(v) if k in paths else v for k, v in cfg.to_dict().items()}
    return {"config": config, "data_hash": cfg.data_hash}


def free_on_resume() -> frozenset[str]:
    """Flags that may change on --resume: where and how often the run writes, how it watches
    itself, memory and speed switches that leave the training math as it was."""
    import dataclasses

    from align.health.args import HealthArgs

    return frozenset({
        "output_dir", "resume", "resume_allow_change", "overwrite_output_dir", "report_to",
        "logging_steps", "save_steps", "save_total_limit", "eval_dataset",
        "gradient_checkpointing", "attn_implementation", "trust_remote_code",
        "allow_new_score_head", "precompute_ref_logps", "offload_ref_model",
        "offload_reward_model", "local_rollout_forward_batch_size",
        "rollout_generate_batch_size", "sort_by_length", "compile_rollout",
        "num_generations_eval", "vllm_gpu_memory_utilization", "threads", "log_samples",
    } | {f.name for f in dataclasses.fields(HealthArgs)})


def config_changes(saved: dict[str, Any], cfg: Any) -> list[tuple[str, Any, Any]]:
    """(field, checkpoint's value, this run's value) for each run-defining field that differs;
    the training data's content counts as field ``dataset``."""
    now = run_record(cfg)
    old, new = saved.get("config") or {}, now["config"]
    free = free_on_resume()
    changes = [(k, old[k], v) for k, v in new.items()
               if k in old and k not in free and old[k] != v]
    if saved.get("data_hash") and now["data_hash"] and saved["data_hash"] != now["data_hash"] \
            and not any(k == "dataset" for k, _, _ in changes):
        changes.append(("dataset", "content sha256 " + saved["data_hash"][:12],
                        "content sha256 " + now["data_hash"][:12]))
    return changes


def allowed_changes(cfg: Any) -> set[str]:
    """The field names --resume-allow-change lists (any spelling: max-steps, --max-steps)."""
    from align.config import parse_list

    names = {n.lstrip("-").replace("-", "_") for n in parse_list(cfg.train.resume_allow_change)}
    known = set(cfg.to_dict())
    unknown = sorted(names - known)
    if unknown:
        raise AlignError(f"--resume-allow-change: no flag named {', '.join(unknown)} for "
                         f"--algo {cfg.algo_name}")
    return names


def check_resume_config(ckpt: Checkpoint, cfg: Any) -> list[tuple[str, Any, Any]]:
    """Refuse to resume ``ckpt`` with changed run-defining flags (naming each) unless
    --resume-allow-change lists them; return the allowed changes."""
    allowed = allowed_changes(cfg)
    if "config" not in ckpt.record:
        return []
    changes = config_changes(ckpt.record, cfg)
    refused = [c for c in changes if c[0] not in allowed]
    if refused:
        listed = "; ".join(f"--{k.replace('_', '-')} {old!r} -> {new!r}" for k, old, new in refused)
        names = ",".join(k.replace("_", "-") for k, _, _ in refused)
        raise AlignError(
            f"--resume: {len(refused)} flag(s) differ from {ckpt.path}: {listed}. Resuming would "
            "mix two runs. Pass the checkpoint's values (its align_checkpoint.json holds the "
            f"config), or continue with the new ones: --resume-allow-change {names}")
    return changes


# --- TRL-backed algorithms: the Trainer writes checkpoint-N, this makes it count -------------
class NothingLeftToTrain(Exception):
    """Raised at train begin when the resumed checkpoint is the run's last step (the model,
    optimizer and schedule are loaded by then; only the final save remains)."""
def trainer_callback(cfg: Any, state_files: Any = None, healthy: Any = None) -> Any:
    """A TrainerCallback that applies rules 1 and 3 to the checkpoints transformers' Trainer
    writes (its own rotation is off: ``save_total_limit=None`` in its config):

    - before a save, the weights are checked: non-finite ones cancel the save and stop
      training (``callback.broken`` = (step, parameter names));
    - after the Trainer's save has finished: ``state_files()`` (name -> text, e.g. the health
      monitor's state) are added, the checkpoint is marked complete with the run's record and
      ``healthy()``, and old checkpoints are rotated.
    """
    from transformers import TrainerCallback

    from align.health.nonfinite import nonfinite_parameters

    class CompleteCheckpoints(TrainerCallback):
        broken: tuple[int, list[str]] | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            # resumed from the last step: the Trainer would train one step too many
            if 0 < state.max_steps <= state.global_step:
                raise NothingLeftToTrain(state.global_step)

        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None,
                        **kwargs: Any) -> None:
            if control.should_save and model is not None:
                bad = nonfinite_parameters(model)
                if bad:
                    self.broken = (state.global_step, bad)
                    control.should_save = False
                    control.should_training_stop = True

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            ckpt = checkpoint_dir(args.output_dir, state.global_step)
            if not state.is_world_process_zero or not ckpt.is_dir():
                return
            for name, text in (state_files() if state_files else {}).items():
                (ckpt / name).write_text(text, encoding="utf-8")
            mark_complete(ckpt, state.global_step, run_record(cfg),
                          healthy=healthy() if healthy else True)
            rotate(Path(args.output_dir), cfg.train.save_total_limit)

    return CompleteCheckpoints()
