"""Health reporting for TRL's online trainers (GRPO, RLOO) through the shared :mod:`align.health`.

TRL logs its own names (``completions/mean_length``, per-token ``kl``, ...). Here they get the
canonical names PPO logs (``rollout/response_len``, ``objective/kl`` in nats per response, ...),
written next to TRL's in metrics.jsonl and fed to the shared :class:`HealthMonitor`. What TRL
does not log, the share of repeated 4-grams, comes from a zero-weight "reward" that sees the
completion token ids. ``--on-collapse rollback`` reloads the last checkpoint saved before the
unhealthy streak began and continues with a lower learning rate; ``stop`` saves and exits 3.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import click

from align.health import CollapseStop, HealthMonitor, repeated_ngram_frac, trainer_callback
from align.runner import CHECKPOINT_RE

HEALTH_STATE = "align_health.json"  # the monitor's state inside each checkpoint (exact resume)

# TRL GRPO/RLOO log key -> canonical name (see align.health and STYLE.md's metric names).
ALIASES = {
    "completions/mean_length": "rollout/response_len",
    "completions/clipped_ratio": "rollout/truncated_frac",
    "entropy": "policy/entropy",
    "clip_ratio/region_mean": "policy/clipfrac",
    "clip_ratio/low_mean": "policy/clipfrac_low",
    "clip_ratio/high_mean": "policy/clipfrac_high",
    "kl": "objective/kl_per_token",
    "reward": "objective/scores",
    "reward_std": "objective/scores_std",
}


def derive(logs: dict[str, Any]) -> dict[str, float]:
    """Canonical metrics TRL does not log directly.

    ``rollout/eos_frac``: TRL counts a completion as clipped when its last token is not EOS,
    so the EOS rate is one minus that. ``objective/kl``: TRL's ``kl`` is a mean per completion
    token; times the mean length it approximates nats per response, the unit the KL blow-up
    detector (``--kl-max``) and PPO use.
    """
    out: dict[str, float] = {}
    clipped, length, kl = (logs.get(k) for k in ("completions/clipped_ratio",
                                                 "completions/mean_length", "kl"))
    if isinstance(clipped, (int, float)):
        out["rollout/eos_frac"] = 1.0 - float(clipped)
    if isinstance(kl, (int, float)) and isinstance(length, (int, float)):
        out["objective/kl"] = float(kl) * float(length)
    return out


def canonical(logs: dict[str, Any]) -> dict[str, Any]:
    """The canonical metrics for one training log event (eval events, prefixed eval_, skipped)."""
    out = {name: logs[key] for key, name in ALIASES.items() if key in logs}
    out.update(derive(logs))
    return out


class RepeatProbe:
    """A zero-weight reward that logs ``rollout/repeat_frac`` (repeated 4-grams per completion).

    TRL hands reward functions the completion ids and a ``log_metric`` hook, which makes this
    the one place that sees every rollout. It returns None (abstains), so it never changes a
    reward, and TRL's warning for rows no reward scored still works.
    """

    __name__ = "health_probe"

    def __call__(self, prompts: list[Any], completions: list[Any],
                 completion_ids: list[list[int]] | None = None,
                 log_metric: Callable[[str, float], None] | None = None,
                 **_: Any) -> list[None]:
        if completion_ids and log_metric is not None:
            fracs = [repeated_ngram_frac(ids) for ids in completion_ids]
            log_metric("rollout/repeat_frac", sum(fracs) / len(fracs))
        return [None] * len(completions)


def callbacks(monitor: HealthMonitor) -> tuple[Any, Any, Any]:
    """(canonical-names callback, health callback, LR-scale callback), in the order the first
    two must run: names are added to the log dict before metrics.jsonl is written."""
    from transformers import TrainerCallback

    class CanonicalMetrics(TrainerCallback):
        """Adds canonical names to each train log event; later callbacks see them."""

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
                   **kwargs: Any) -> None:
            if logs:
                logs.update(canonical(logs))

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ckpt.is_dir() and state.is_world_process_zero:
                (ckpt / HEALTH_STATE).write_text(json.dumps(monitor.state_dict()),
                                                 encoding="utf-8")

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

    return (CanonicalMetrics(), trainer_callback(monitor, aliases=ALIASES, derive=derive),
            ScaleLearningRate())


def restore_monitor(monitor: HealthMonitor, checkpoint: str | None) -> None:
    """On --resume, continue with the monitor's baseline and streaks from the checkpoint."""
    if checkpoint and (Path(checkpoint) / HEALTH_STATE).is_file():
        monitor.load_state_dict(json.loads((Path(checkpoint) / HEALTH_STATE).read_text()))


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


def train_with_health(trainer: Any, cfg: Any, tokenizer: Any, resume_from: str | None,
                      monitor: HealthMonitor, cbs: tuple[Any, Any, Any], metrics_cb: Any,
                      new_metrics_cb: Callable[[int], Any]) -> dict[str, Any]:
    """Train and save; on rollback resume from the last healthy checkpoint at a lower LR (until
    --max-rollbacks), on stop raise :class:`CollapseStop` after saving."""
    from align.algos import common

    _, health_cb, lr_cb = cbs
    metrics = common.train_and_save(trainer, cfg, tokenizer, resume_from)
    while health_cb.action == "rollback":
        # the streak began patience logged steps before the detector fired
        streak_start = health_cb.fired_at - cfg.health.health_patience * cfg.train.logging_steps
        ckpt, step = checkpoint_before(cfg.train.output_dir, streak_start)
        if ckpt is None:
            health_cb.action = "stop"
            monitor.notes.append(f"rollback: no checkpoint saved at or before step "
                                 f"{streak_start}, when the collapse began; stopping instead "
                                 "(save more often with --save-steps)")
            break
        drop_checkpoints_after(cfg.train.output_dir, step)
        lr_cb.scale = cfg.health.rollback_lr_factor ** monitor.rollbacks
        click.echo(f"[health] rollback {monitor.rollbacks}/{cfg.health.max_rollbacks}: resuming "
                   f"from {ckpt.name} at {lr_cb.scale:g} x the learning rate", err=True)
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
            f"training stopped by --on-collapse stop at step {health_cb.fired_at} ({events}). "
            f"The model as it was then is saved in {cfg.train.output_dir}; metrics.jsonl shows "
            "the run up to the collapse. See the [health] lines above for what to change.")
    metrics.update(monitor.summary())
    return metrics
