"""The shared health monitor around any TRL trainer: DPO family, GRPO, RLOO.

:class:`TrainerHealth` bundles an :class:`align.health.HealthMonitor` with three callbacks:

1. *names*: adds canonical metric names to each train log event (``canonical(logs)``, per
   trainer) before metrics.jsonl is written, and saves the monitor's state in every checkpoint
   so ``--resume`` continues its baselines and streaks;
2. *health*: feeds the monitor and ends training on stop/rollback (align.health);
3. *learning rate*: after a rollback, runs the resumed optimizer and schedule at a lower LR.

:meth:`TrainerHealth.train` then trains, rolls back to the last checkpoint saved before the
unhealthy streak began (until ``--max-rollbacks``), and raises :class:`CollapseStop` (exit 3)
after saving when the run is to stop.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import click

from align.health import CollapseStop, HealthMonitor, trainer_callback
from align.runner import CHECKPOINT_RE

HEALTH_STATE = "align_health.json"  # the monitor's state inside each checkpoint (exact resume)
Canonical = Callable[[dict[str, Any]], dict[str, Any]]


def _names_callback(monitor: HealthMonitor, canonical: Canonical | None) -> Any:
    from transformers import TrainerCallback

    class CanonicalMetrics(TrainerCallback):
        """Adds canonical names to each train log event; later callbacks see them."""

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
                   **kwargs: Any) -> None:
            if logs and canonical is not None:
                logs.update(canonical(logs))

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ckpt.is_dir() and state.is_world_process_zero:
                (ckpt / HEALTH_STATE).write_text(json.dumps(monitor.state_dict()),
                                                 encoding="utf-8")

    return CanonicalMetrics()


def _lr_callback() -> Any:
    from transformers import TrainerCallback

    class ScaleLearningRate(TrainerCallback):
        """After a rollback: the resumed optimizer and schedule run at ``scale`` x the LR."""

        scale = 1.0

        def on_train_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None,
                           lr_scheduler: Any = None, **kwargs: Any) -> None:
            if self.scale == 1.0 or optimizer is None:
                return
            schedule = getattr(lr_scheduler, "scheduler", lr_scheduler)
            base = args.learning_rate * self.scale
            old = list(getattr(schedule, "base_lrs", [args.learning_rate] *
                               len(optimizer.param_groups)))
            for group, old_base in zip(optimizer.param_groups, old):
                # keep the schedule's position: same fraction of the (new) peak
                group["lr"] = base * (group["lr"] / old_base if old_base else 1.0)
                group["initial_lr"] = base
            if schedule is not None and hasattr(schedule, "base_lrs"):
                schedule.base_lrs = [base] * len(optimizer.param_groups)
                # what Trainer logs as learning_rate until the schedule's next step
                schedule._last_lr = [group["lr"] for group in optimizer.param_groups]

    return ScaleLearningRate()


def checkpoint_before(output_dir: str, step: int) -> tuple[Path | None, int]:
    """The latest ``checkpoint-N`` with N <= ``step`` (and N), or (None, 0)."""
    found = [(int(m.group(1)), p) for p in Path(output_dir).iterdir()
             if p.is_dir() and (m := CHECKPOINT_RE.match(p.name)) and int(m.group(1)) <= step]
    return (max(found)[1], max(found)[0]) if found else (None, 0)


def drop_checkpoints_after(output_dir: str, step: int) -> None:
    """Delete checkpoints saved after ``step``: they hold the collapsed policy, and --resume
    must not pick them up."""
    for p in Path(output_dir).iterdir():
        if p.is_dir() and (m := CHECKPOINT_RE.match(p.name)) and int(m.group(1)) > step:
            shutil.rmtree(p)


class TrainerHealth:
    """A health monitor and its callbacks for one TRL training run."""

    def __init__(self, cfg: Any, resume_from: str | None,
                 canonical: Canonical | None = None, aliases: dict[str, str] | None = None,
                 derive: Canonical | None = None) -> None:
        self.monitor = HealthMonitor(cfg.health)
        if resume_from and (Path(resume_from) / HEALTH_STATE).is_file():
            self.monitor.load_state_dict(
                json.loads((Path(resume_from) / HEALTH_STATE).read_text()))
        self.names_cb = _names_callback(self.monitor, canonical)
        self.health_cb = trainer_callback(self.monitor, aliases=aliases, derive=derive)
        self.lr_cb = _lr_callback()

    def callbacks(self, metrics_cb: Any) -> list[Any]:
        """The callbacks in the order they must run: names before the metrics writer."""
        return [self.names_cb, metrics_cb, self.health_cb, self.lr_cb]

    def train(self, trainer: Any, cfg: Any, tokenizer: Any, resume_from: str | None,
              metrics_cb: Any, new_metrics_cb: Callable[[int], Any]) -> dict[str, Any]:
        """Train and save; roll back or stop as --on-collapse says (see module docstring)."""
        from align.algos import common

        monitor, health_cb, lr_cb = self.monitor, self.health_cb, self.lr_cb
        metrics = common.train_and_save(trainer, cfg, tokenizer, resume_from)
        while health_cb.action == "rollback":
            # the streak began patience logged steps before the detector fired
            streak_start = health_cb.fired_at - \
                cfg.health.health_patience * cfg.train.logging_steps
            ckpt, step = checkpoint_before(cfg.train.output_dir, streak_start)
            if ckpt is None:
                health_cb.action = "stop"
                monitor.notes.append(f"rollback: no checkpoint saved at or before step "
                                     f"{streak_start}, when the collapse began; stopping "
                                     "instead (save more often with --save-steps)")
                break
            drop_checkpoints_after(cfg.train.output_dir, step)
            lr_cb.scale = cfg.health.rollback_lr_factor ** monitor.rollbacks
            click.echo(f"[health] rollback {monitor.rollbacks}/{cfg.health.max_rollbacks}: "
                       f"resuming from {ckpt.name} at {lr_cb.scale:g} x the learning rate",
                       err=True)
            health_cb.action, monitor.streaks = "continue", {}
            trainer.remove_callback(metrics_cb)  # it closed its file at train end
            metrics_cb = new_metrics_cb(step)
            trainer.add_callback(metrics_cb)
            metrics = common.train_and_save(trainer, cfg, tokenizer, str(ckpt))
        for note in monitor.notes:
            click.echo(f"[health] {note}", err=True)
        if health_cb.action == "stop":
            events = "; ".join(f"{e.detector} at step {e.step}" for e in monitor.events)
            raise CollapseStop(
                f"training stopped by --on-collapse stop at step {health_cb.fired_at} "
                f"({events}). The model as it was then is saved in {cfg.train.output_dir}; "
                "metrics.jsonl shows the run up to the collapse. See the [health] lines above "
                "for what to change.")
        metrics.update(monitor.summary())
        return metrics
