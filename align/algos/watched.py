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
from align.metrics import MetricsLogger, run_logger, trainer_callback


def resume_checkpoint(cfg: RunConfig) -> tuple[str | None, int | None]:
    """The checkpoint --resume continues from (picked once by align.output_dir, handed on by
    the runner as ``cfg.resume_from``) and its step; (None, None) for a new run."""
    ckpt = cfg.resume_from
    return (str(ckpt.path), ckpt.step) if ckpt is not None else (None, None)


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
    """The NaN stop (align.health.rollback.nonfinite_stop) of a TRL-backed run."""
    from align.health.rollback import nonfinite_stop as stop

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
    restart: Any = None  # the checkpoint a rollback trains on from (align.checkpoints.Checkpoint)

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


def _outcome(w: Watch) -> tuple[str, list[Any], int | None]:
    """(action, the events behind it, the step) after trainer.train returned: weights that
    broke before a save count as a NaN event of the health monitor (without one: a stop)."""
    broken = w.ckpt_cb.broken
    if w.health is None:
        return ("continue", [], None) if broken is None else ("stop", [], broken[0])
    cb = w.health.health_cb
    if broken is None:
        return cb.action, cb.events, cb.fired_at
    from align.health.monitor import HealthEvent
    from align.health.nonfinite import describe

    step, names = broken
    event = HealthEvent("nan", step, f"the weights became NaN/inf: {len(names)} tensors are "
                                     f"not finite ({describe(names)}) before the save")
    click.echo(str(event), err=True)
    w.health.monitor.events.append(event)
    if cb.action in ("stop", "rollback") and cb.fired_at == step:
        cb.events = [*cb.events, event]  # the step's metrics had fired already
    else:
        cb.action, cb.fired_at, cb.events = w.health.monitor.decide([event]), step, [event]
    return cb.action, cb.events, step


def health_hooks(trainer: Any, cfg: RunConfig, tokenizer: Any, w: Watch,
                 save_model: Callable[..., None]) -> Any:
    """The adapter through which the health driver (align.health.driver) acts on a TRL run:
    a rollback resets the callbacks and leaves the checkpoint to train from in
    ``w.restart``; a stop saves the model as it is."""
    from align.health.driver import RunHooks

    def roll_back(target: Any, lr_scale: float) -> None:
        w.lr_cb.scale = lr_scale
        w.health.health_cb.action, w.health.monitor.streaks, w.ckpt_cb.broken = \
            "continue", {}, None
        trainer.remove_callback(w.metrics_cb)  # it closed its file at train end
        w.metrics_cb = w.new_metrics_cb(target.step)
        trainer.add_callback(w.metrics_cb)
        w.restart = target

    def save_stopped() -> str:
        save_model(trainer, cfg, tokenizer)
        return f"The model as it was then is saved in {cfg.train.output_dir}"

    return RunHooks(out=Path(cfg.train.output_dir), algo=cfg.algo_name,
                    lr_flag="--learning-rate", lr=cfg.train.learning_rate,
                    logging_steps=cfg.train.logging_steps, roll_back=roll_back,
                    save_stopped=save_stopped)


def train_watched(trainer: Any, cfg: RunConfig, tokenizer: Any, resume_from: str | None,
                  w: Watch, save_model: Callable[..., None] = save) -> dict[str, Any]:
    """Train and save; roll back or stop as the detectors and --on-collapse say (the health
    driver, align.health.driver, decides how). A stop raises CollapseStop (exit 3) after
    saving the model, except when its numbers broke (NaN/inf): then nothing is saved and the
    last finite checkpoint stays the newest."""
    from align.health.driver import act

    hooks = health_hooks(trainer, cfg, tokenizer, w, save_model)
    metrics = train(trainer, cfg, resume_from)
    while True:
        action, events, step = _outcome(w)
        if w.health is None:  # no detectors (RM, SFT): only broken weights stop the run
            if action == "stop":
                names = w.ckpt_cb.broken[1]
                raise nonfinite_stop(cfg, f"the weights became NaN/inf: {len(names)} tensors "
                                          f"are not finite before the save at step {step}")
            break
        cb = w.health.health_cb
        nan_at, cb.nan_logged_at = cb.nan_logged_at, None
        if act(hooks, w.health.monitor, action, events, step, nan_at) != "rolled_back":
            break
        metrics = train(trainer, cfg, str(w.restart.path))
    save_model(trainer, cfg, tokenizer)
    if w.health:
        metrics.update(w.health.monitor.summary())
    return metrics


Builder = Callable[..., tuple[Any, Any]]


def run_trainer(cfg: RunConfig, build: Builder, data: Any, eval_data: Any = None,
                callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """The body of every adapter's ``run``: build with the watching callbacks (metrics,
    complete checkpoints, health for algorithms that take the health flags), train, save."""
    resume_from, resume_step = resume_checkpoint(cfg)
    w = watch(cfg, resume_from, resume_step)
    trainer, tokenizer = build(cfg, data, eval_data, callbacks=[*w.callbacks(), *callbacks])
    return train_watched(trainer, cfg, tokenizer, resume_from, w)
