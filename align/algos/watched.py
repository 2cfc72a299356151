"""How a TRL trainer runs in align, watched by three callbacks (complete checkpoints with
finite weights, metrics.jsonl/TensorBoard, the health monitor), resumed from the newest complete
checkpoint, rolled back or stopped as the detectors and --on-collapse say, then saved.

:func:`run_trainer` is the body of every offline adapter's ``run``; GRPO/RLOO
(``align.algos.online``) and the reward model (``align.algos.rm``) use :func:`watch` and
:func:`train_watched` around trainers they build themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import click

from align import checkpoints, console
from align.config import RunConfig
from align.errors import AlignError
from align.metrics import MetricsLogger, run_logger, trainer_callback


def resume_checkpoint(cfg: RunConfig) -> tuple[str | None, int | None]:
    """The checkpoint to resume from (with --resume: the newest complete one) and its step."""
    if not cfg.train.resume:
        return None, None
    ckpt = checkpoints.latest(Path(cfg.train.output_dir))
    if ckpt is None:
        raise AlignError(f"--resume: no complete checkpoint in {cfg.train.output_dir}")
    return str(ckpt.path), ckpt.step


def metrics_logger(cfg: RunConfig, resume_step: int | None) -> MetricsLogger:
    return run_logger(cfg, cfg.train.output_dir, resume_step)


def train(trainer: Any, cfg: RunConfig, resume_from: str | None) -> dict[str, Any]:
    """Train (resuming if asked); return the run's metrics with the first and last loss. A
    full disk or a read-only directory met while saving a checkpoint is an AlignError."""
    console.replace_progress_bar(trainer)  # align's bar instead of a metrics dict per step
    try:
        with checkpoints.writing(cfg.train.output_dir, "checkpoints and metrics"):
            result = trainer.train(resume_from_checkpoint=resume_from)
    except checkpoints.NothingLeftToTrain as done:
        click.echo(f"{resume_from} is the last step ({done}): nothing left to train")
        return {}
    metrics = dict(result.metrics)
    history = [r for r in trainer.state.log_history if "loss" in r]
    if history:
        metrics["first_loss"] = history[0]["loss"]
        metrics["last_loss"] = history[-1]["loss"]
    return metrics


def check_finite(model: Any, cfg: RunConfig, when: str) -> None:
    """Refuse to save a model holding NaN/inf weights (CollapseStop, exit 3)."""
    from align.health.nonfinite import describe, nonfinite_parameters

    bad = nonfinite_parameters(model)
    if bad:
        raise nonfinite_stop(cfg, f"the weights became NaN/inf: {len(bad)} tensors are not "
                                  f"finite ({describe(bad)}) {when}")


def nonfinite_stop(cfg: RunConfig, what: str) -> Exception:
    from align.health.nonfinite import nonfinite_stop as stop

    return stop(cfg.train.output_dir, cfg.algo_name, what, "--learning-rate",
                cfg.train.learning_rate)


def save(trainer: Any, cfg: RunConfig, tokenizer: Any) -> None:
    """Save the final model (full) or adapter (LoRA/QLoRA) and the tokenizer to --output-dir,
    after checking that its weights are finite."""
    check_finite(trainer.model, cfg, "at the end of training")
    with checkpoints.writing(cfg.train.output_dir, "the final model"):
        trainer.save_model(cfg.train.output_dir)
        if tokenizer is not None:
            tokenizer.save_pretrained(cfg.train.output_dir)
    what = "LoRA adapter" if cfg.lora.enabled else "model"
    click.echo(f"saved {what} to {cfg.train.output_dir}")
    if cfg.lora.enabled:
        click.echo(f"  merge it into a plain model: align merge-lora {cfg.train.output_dir} "
                   "--output-dir MERGED_DIR")


def lr_callback() -> Any:
    """Runs a resumed optimizer and schedule at ``--learning-rate`` x ``scale``.

    transformers restores the learning rate of the checkpoint with its optimizer and schedule,
    so without this a resume with a new --learning-rate (--resume-allow-change) would print
    the new rate and train at the old one; after a rollback ``scale`` lowers it."""
    from transformers import TrainerCallback

    class RebaseLearningRate(TrainerCallback):
        scale = 1.0

        def on_train_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None,
                           lr_scheduler: Any = None, **kwargs: Any) -> None:
            if optimizer is None:
                return
            schedule = getattr(lr_scheduler, "scheduler", lr_scheduler)
            base = args.learning_rate * self.scale
            old = list(getattr(schedule, "base_lrs", [args.learning_rate] *
                               len(optimizer.param_groups)))
            if all(o == base for o in old):
                return
            for group, old_base in zip(optimizer.param_groups, old):
                # keep the schedule's position: same fraction of the (new) peak
                group["lr"] = base * (group["lr"] / old_base if old_base else 1.0)
                group["initial_lr"] = base
            if schedule is not None and hasattr(schedule, "base_lrs"):
                schedule.base_lrs = [base] * len(optimizer.param_groups)
                # what Trainer logs as learning_rate until the schedule's next step
                schedule._last_lr = [group["lr"] for group in optimizer.param_groups]

    return RebaseLearningRate()


@dataclass
class Watch:
    """What watches a TRL training run: the checkpoint callback (complete markers, rotation,
    finite weights), the health monitor (None for RM/SFT), the metrics writer and the
    learning-rate rebasing of a resume or rollback."""

    ckpt_cb: Any
    health: Any  # align.health.trainer.TrainerHealth | None
    metrics_cb: Any
    new_metrics_cb: Callable[[int | None], Any]  # step -> a fresh writer (after a rollback)
    lr_cb: Any

    def callbacks(self) -> list[Any]:
        """In the order they must run (the checkpoint callback's end-of-run check comes before
        the metrics writer cuts the file back)."""
        cbs = self.health.callbacks(self.metrics_cb) if self.health else [self.metrics_cb]
        return [self.ckpt_cb, *cbs, self.lr_cb]


def watch(cfg: RunConfig, resume_from: str | None, resume_step: int | None,
          **health_options: Any) -> Watch:
    """The callbacks of one TRL run (``health_options``: canonical, aliases, derive)."""
    health = None
    if cfg.health is not None:
        from align.health.trainer import TrainerHealth

        health = TrainerHealth(cfg, resume_from, **health_options)

    def new_metrics_cb(step: int | None) -> Any:
        return trainer_callback(metrics_logger(cfg, step))

    ckpt_cb = checkpoints.trainer_callback(
        cfg, state_files=health.state_files if health else None,
        healthy=health.monitor.healthy if health else None)
    lr_cb = lr_callback()
    if health is not None:  # a resumed run keeps the LR its rollbacks lowered
        from align.health.rollback import rollback_lr_scale

        lr_cb.scale = rollback_lr_scale(cfg.health.rollback_lr_factor, health.monitor.rollbacks)
    return Watch(ckpt_cb, health, new_metrics_cb(resume_step), new_metrics_cb, lr_cb)


def _outcome(w: Watch, cfg: RunConfig) -> str:
    """continue, stop or rollback after trainer.train returned (weights broken at a save
    count as a NaN event of the health monitor)."""
    if w.ckpt_cb.broken is None:
        return w.health.health_cb.action if w.health else "continue"
    if w.health is None:
        return "stop"
    from align.health.monitor import HealthEvent
    from align.health.nonfinite import describe

    step, names = w.ckpt_cb.broken
    event = HealthEvent("nan", step, f"the weights became NaN/inf: {len(names)} tensors are "
                                     f"not finite ({describe(names)}) before the save")
    click.echo(str(event), err=True)
    cb = w.health.health_cb
    w.health.monitor.events.append(event)
    if cb.action in ("stop", "rollback") and cb.fired_at == step:
        cb.events = [*cb.events, event]  # the step's metrics had fired already
        return cb.action
    action = w.health.monitor.decide([event])
    cb.action, cb.fired_at, cb.events = action, step, [event]
    return action


def train_watched(trainer: Any, cfg: RunConfig, tokenizer: Any, resume_from: str | None,
                  w: Watch, save_model: Callable[..., None] = save) -> dict[str, Any]:
    """Train and save; roll back (align.health.rollback) or stop as the detectors and
    --on-collapse say. A stop raises CollapseStop (exit 3) after saving the model, except
    when its numbers broke (NaN/inf): then nothing is saved and the last finite checkpoint
    stays the newest."""
    from align.health.rollback import (roll_back_checkpoints, rollback_lr_scale,
                                       rollback_target)

    out = cfg.train.output_dir
    metrics = train(trainer, cfg, resume_from)
    action = _outcome(w, cfg)
    while action == "rollback":
        monitor, health_cb = w.health.monitor, w.health.health_cb
        _set_aside_broken(w, cfg)
        target = rollback_target(out)
        if target is None:
            action = "stop"
            monitor.notes.append("rollback: no checkpoint saved before the collapse began; "
                                 "stopping instead (save more often with --save-steps)")
            break
        dropped = roll_back_checkpoints(out, target.step)
        w.lr_cb.scale = rollback_lr_scale(cfg.health.rollback_lr_factor, monitor.rollbacks)
        click.echo(f"[health] rollback {monitor.rollbacks}/{cfg.health.max_rollbacks}: "
                   f"resuming from {target.path.name} at {w.lr_cb.scale:g} x the "
                   f"learning rate" + (f" (deleted checkpoint-{', checkpoint-'.join(map(str, dropped))})"
                                       if dropped else ""), err=True)
        health_cb.action, monitor.streaks, w.ckpt_cb.broken = "continue", {}, None
        trainer.remove_callback(w.metrics_cb)  # it closed its file at train end
        w.metrics_cb = w.new_metrics_cb(target.step)
        trainer.add_callback(w.metrics_cb)
        metrics = train(trainer, cfg, str(target.path))
        action = _outcome(w, cfg)
    if w.health:
        for note in w.health.monitor.notes:
            click.echo(f"[health] {note}", err=True)
    if action == "stop":
        raise _stop(trainer, cfg, tokenizer, w, save_model)
    save_model(trainer, cfg, tokenizer)
    if w.health:
        metrics.update(w.health.monitor.summary())
    return metrics


def _set_aside_broken(w: Watch, cfg: RunConfig) -> None:
    """After a NaN in the logged metrics, the checkpoints that produced it go aside."""
    from align.health.rollback import set_aside_broken

    at = w.health.health_cb.nan_logged_at
    if at is not None:
        set_aside_broken(cfg.train.output_dir, at, cfg.train.logging_steps)
        w.health.health_cb.nan_logged_at = None


def _stop(trainer: Any, cfg: RunConfig, tokenizer: Any, w: Watch,
          save_model: Callable[..., None]) -> Exception:
    from align.health.monitor import CollapseStop

    events = w.health.health_cb.events if w.health else []
    fired_at = w.health.health_cb.fired_at if w.health else w.ckpt_cb.broken[0]
    if w.ckpt_cb.broken is not None and not events:
        names = w.ckpt_cb.broken[1]
        return nonfinite_stop(cfg, f"the weights became NaN/inf: {len(names)} tensors are not "
                                   f"finite before the save at step {fired_at}")
    nan = [e for e in events if e.detector == "nan"]
    if nan:
        _set_aside_broken(w, cfg)
        return nonfinite_stop(cfg, f"at step {fired_at}, {nan[0].message.split('. Try:')[0]}")
    save_model(trainer, cfg, tokenizer)
    listed = "; ".join(f"{e.detector} at step {e.step}" for e in w.health.monitor.events)
    return CollapseStop(
        f"training stopped by --on-collapse {cfg.health.on_collapse} at step {fired_at} "
        f"({listed}). The model as it was then is saved in {cfg.train.output_dir}; "
        "metrics.jsonl shows the run up to the collapse. See the [health] lines above "
        "for what to change.")


Builder = Callable[..., tuple[Any, Any]]


def run_trainer(cfg: RunConfig, build: Builder, data: Any, eval_data: Any = None,
                callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """The body of every adapter's ``run``: build with the watching callbacks (metrics,
    complete checkpoints, health for algorithms that take the health flags), train, save."""
    resume_from, resume_step = resume_checkpoint(cfg)
    w = watch(cfg, resume_from, resume_step)
    trainer, tokenizer = build(cfg, data, eval_data, callbacks=[*w.callbacks(), *callbacks])
    return train_watched(trainer, cfg, tokenizer, resume_from, w)
