"""The one health driver: what a run does once the monitor has decided, for PPO and every
TRL-backed algorithm alike.

Each training loop reaches it through a small adapter, :class:`RunHooks` (where the run writes,
how its learning rate is named, how it reloads a checkpoint and saves its state): PPO's own
loop after each logged step (``align/ppo/trainer.py``), the TRL trainers' after
``trainer.train()`` returns (``align/algos/watched.py``). :func:`act` applies the rules:

1. ``continue`` / ``warn``: nothing to do (each event was printed where it fired);
2. non-finite values logged at step k: the checkpoints saved from step k - ``--logging-steps``
   on hold the weights that produced them and go aside
   (:func:`align.health.rollback.set_aside_broken`);
3. ``rollback``: back to the newest healthy checkpoint
   (:func:`~align.health.rollback.rollback_target`), the checkpoints after it deleted, the
   learning rate times ``--rollback-lr-factor`` per rollback so far; without such a checkpoint
   the run stops instead;
4. ``stop``: after non-finite values nothing is saved
   (:func:`~align.health.rollback.nonfinite_stop`); otherwise the state as it is now is saved.
   Either way :class:`~align.health.monitor.CollapseStop` ends the run (exit code 3).

A detector that should act (roll back or stop) only has to make
:meth:`align.health.monitor.HealthMonitor.decide` return that action: this module carries it
out in every trainer, with one set of messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import click

from align.checkpoints import Checkpoint, checkpoint_name
from align.health.detectors import ADVISORY
from align.health.monitor import CollapseStop, HealthEvent, HealthMonitor
from align.health.rollback import (nonfinite_stop, roll_back_checkpoints, rollback_lr_scale,
                                   rollback_target, set_aside_broken)


def _stderr(text: str) -> None:
    click.echo(text, err=True)


def _no_wait() -> None:
    pass


@dataclass
class RunHooks:
    """What the driver needs to know about one run, and how it acts on it: the adapter that
    each training loop gives :func:`act`."""

    out: Path  # --output-dir, where the checkpoints are
    algo: str  # for the hints
    lr_flag: str  # the policy's learning-rate flag: --learning-rate, PPO's --actor-lr
    lr: float | None  # its value in this run
    logging_steps: int
    # reload checkpoint ``target`` and train on at ``lr_scale`` x the run's learning rate
    roll_back: Callable[[Checkpoint, float], None]
    # save the state as it is now; return a sentence saying what was saved where
    save_stopped: Callable[[], str]
    say: Callable[[str], None] = _stderr  # print a [health] line (PPO: rank 0 only)
    is_main: bool = True  # the process that writes files (one per launch)
    barrier: Callable[[], None] = _no_wait  # wait for every process (multi-process PPO)


def stop_nonfinite(hooks: RunHooks, what: str) -> CollapseStop:
    """The NaN stop of this run: nothing is saved, the message names the last finite
    checkpoint and how to continue from it."""
    return nonfinite_stop(hooks.out, hooks.algo, what, hooks.lr_flag, hooks.lr)


def say_notes(hooks: RunHooks, monitor: HealthMonitor) -> None:
    """Print the monitor's one-time remarks (e.g. "--max-rollbacks reached") and forget them."""
    for note in monitor.notes:
        hooks.say(f"[health] {note}")
    monitor.notes.clear()


def act(hooks: RunHooks, monitor: HealthMonitor, action: str, events: list[HealthEvent],
        step: int, nan_logged_at: int | None = None) -> str:
    """Carry out ``action`` (what ``monitor.decide`` made of ``events`` at ``step``): return
    ``continue``, ``warn`` or ``rolled_back``; a stop raises CollapseStop.

    ``nan_logged_at``: the logged step whose metrics held NaN/inf, whose checkpoints go aside
    (None when no logged metric was non-finite, e.g. the weights broke before a save)."""
    say_notes(hooks, monitor)
    if action in ("continue", "warn"):
        return action
    if nan_logged_at is not None:
        if hooks.is_main:
            set_aside_broken(hooks.out, nan_logged_at, hooks.logging_steps)
        hooks.barrier()
    if action == "rollback":
        target = rollback_target(hooks.out)
        if target is not None:
            roll_back(hooks, monitor, target, step)
            return "rolled_back"
        hooks.say("[health] rollback: no checkpoint saved before the collapse began is left; "
                  "stopping instead (save more often with --save-steps)")
    raise stop(hooks, monitor, events, step)


def roll_back(hooks: RunHooks, monitor: HealthMonitor, target: Checkpoint, step: int) -> None:
    """Rule 3: delete the checkpoints after ``target``, say so, reload it at the lowered LR."""
    dropped = roll_back_checkpoints(hooks.out, target.step) if hooks.is_main else []
    hooks.barrier()
    scale = rollback_lr_scale(monitor.args.rollback_lr_factor, monitor.rollbacks)
    deleted = f" (deleted {', '.join(map(checkpoint_name, dropped))})" if dropped else ""
    hooks.say(f"[health] rollback {monitor.rollbacks}/{monitor.args.max_rollbacks} at step "
              f"{step}: resuming from {target.path.name} at {scale:g} x the learning rate"
              f"{deleted}")
    hooks.roll_back(target, scale)


def stop(hooks: RunHooks, monitor: HealthMonitor, events: list[HealthEvent], step: int
         ) -> CollapseStop:
    """Rule 4: the exception that ends the run, after saving its state unless its numbers
    broke."""
    nan = [e for e in events if e.detector == "nan"]
    if nan:
        return stop_nonfinite(hooks, f"at step {step}, {nan[0].message.split('. Try:')[0]}")
    saved = hooks.save_stopped()
    listed = "; ".join(f"{e.detector} at step {e.step}" for e in events
                       if e.detector not in ADVISORY or e.persistent)
    return CollapseStop(
        f"training stopped by --on-collapse {monitor.args.on_collapse} at step {step} "
        f"({listed}). {saved}; metrics.jsonl shows the run up to the collapse, and the "
        "[health] lines above say what to change")
