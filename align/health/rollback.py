"""The one rollback rule, for PPO and the TRL-backed algorithms alike.

When a detector fires under ``--on-collapse rollback``, the run returns to the newest complete
checkpoint saved while no detector's streak was running (its marker says ``healthy``), deletes
the checkpoints saved after it (they hold the collapsing policy, and ``--resume`` must not pick
them up), and continues at ``--rollback-lr-factor`` to the power of the number of rollbacks so
far times the learning rate. Without such a checkpoint, or after ``--max-rollbacks``, it stops.

A NaN in the metrics of logged step k was computed with the weights of step k -
``--logging-steps`` or later: checkpoints from then on are finite but broken, so they are set
aside (``nan-checkpoint-N``) before a rollback or a stop picks the last good one; the NaN
stop (:func:`nonfinite_stop`) saves nothing and names that checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import click

from align.checkpoints import Checkpoint, drop_after, latest, move_aside, scan
from align.health.hints import hint
from align.health.monitor import CollapseStop


def rollback_target(out: str | Path) -> Checkpoint | None:
    """The checkpoint a rollback returns to, or None."""
    return latest(Path(out), healthy=True)


def rollback_lr_scale(factor: float, rollbacks: int) -> float:
    """The learning rate's multiplier after ``rollbacks`` rollbacks."""
    return factor ** rollbacks


def roll_back_checkpoints(out: str | Path, step: int) -> list[int]:
    """Delete the checkpoints after the target ``step``; return their steps."""
    return drop_after(Path(out), step)


def set_aside_broken(out: str | Path, fired_at: int, logging_steps: int) -> list[Path]:
    """Move the checkpoints whose weights produced the NaN logged at ``fired_at`` aside."""
    broken = [c.path for c in scan(Path(out))[0] if c.step >= fired_at - logging_steps]
    moved = move_aside(broken, prefix="nan-")
    for old, new in zip(broken, moved):
        click.echo(f"[health] set {old.name} aside as {new.name}: the NaN at step {fired_at} "
                   "came from its weights or later ones", err=True)
    return moved


def nonfinite_stop(out: str | Path, algo: str, what: str, lr_flag: str, lr: float | None
                   ) -> CollapseStop:
    """The NaN stop (exit 3): what broke, the last finite checkpoint, how to continue from it.
    Nothing is saved from the broken state, so the newest checkpoint stays the last finite one."""
    last = latest(Path(out))
    if last is not None:
        lower = f" {lr_flag} {lr / 10:g}" if lr else ""
        flag = lr_flag.lstrip("-")
        keep = (f"the last finite checkpoint is {last.path}; continue from it with --resume"
                f"{lower} --resume-allow-change {flag}")
    else:
        keep = ("no finite checkpoint from before it is left to continue from; start again "
                "(--overwrite-output-dir) with a lower learning rate, saving more often "
                "(--save-steps)")
    return CollapseStop(f"training stopped: {what}. No model was saved from this state; "
                        f"{keep}. Try: {hint('nan', algo)}")
