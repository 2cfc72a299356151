"""What every TRL-backed adapter shares: mapping TrainArgs to a TRL config, loading the policy
and reference, turning validated rows into a dataset, the metrics callback, resume and the
final save. Algorithm-specific fields stay in each adapter.

An adapter is two functions: ``build_trainer(cfg, data, eval_data, callbacks)`` returns
``(trainer, tokenizer)`` (tests use it to reach the trainer's loss on a fixed batch), and
``run(cfg, data, eval_data)`` is ``run_trainer(cfg, build_trainer, data, eval_data)``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import click

from align import checkpoints
from align.cache import cache_dir
from align.config import RunConfig
from align.errors import AlignError
from align.metrics import MetricsLogger, trainer_callback


def learning_rate(cfg: RunConfig) -> float:
    """The policy's learning rate (the resolved config holds the registry's default when
    --learning-rate was not given: align.options.fill_learning_rates)."""
    if cfg.train.learning_rate is None:
        raise ValueError("cfg.train.learning_rate is unset: build the config with "
                         "align.options.resolve (it fills in the algorithm's default)")
    return cfg.train.learning_rate


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def trl_config(cfg: RunConfig, config_cls: type, has_eval: bool = False, **fields: Any) -> Any:
    """Build a TRL config (DPOConfig, KTOConfig, ...) from our TrainArgs plus ``fields``."""
    t = cfg.train
    # QLoRA computes in bf16 (the 4-bit base is dequantised to bf16), so train in bf16 mixed
    # precision unless fp16 was asked for.
    bf16 = t.bf16 or (cfg.lora.qlora and not t.fp16)
    kwargs: dict[str, Any] = dict(
        output_dir=t.output_dir,
        learning_rate=learning_rate(cfg),
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        max_steps=t.max_steps,
        num_train_epochs=t.num_train_epochs,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=None,  # align rotates complete checkpoints (align.checkpoints)
        seed=t.seed,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_ratio,  # a float in [0, 1) is a ratio in transformers 5
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        bf16=bf16,
        fp16=t.fp16,
        gradient_checkpointing=t.gradient_checkpointing,
        use_liger_kernel=t.use_liger_kernel,
        deepspeed=t.deepspeed,
        report_to="none",  # align writes metrics.jsonl and TensorBoard itself
        logging_nan_inf_filter=False,  # a NaN loss must reach the NaN detector, not become 0
        use_cpu=not on_gpu(),
        eval_strategy="steps" if has_eval else "no",
        eval_steps=t.save_steps if has_eval else None,
        trust_remote_code=cfg.model.trust_remote_code,
    )
    if "max_length" in config_cls.__dataclass_fields__:
        kwargs["max_length"] = cfg.data.max_length
    kwargs.update(fields)
    return config_cls(**kwargs)


def load_tokenizer(cfg: RunConfig, data: Any = None) -> Any:
    """The policy's tokenizer; conversational data needs it to have a chat template."""
    from align.models import check_chat_template
    from align.models import load_tokenizer as _load

    tok = _load(cfg.model.model, cfg.model)
    check_chat_template(tok, data, cfg.model.model)
    return tok


def load_policy(cfg: RunConfig, *, prepare_kbit: bool = True) -> Any:
    """The model to train. With --qlora, readied for k-bit training (norms in fp32, input
    grads on) unless the trainer does it itself (``prepare_kbit=False``)."""
    from align.models import load_causal_lm

    model = load_causal_lm(cfg.model.model, cfg.model, cfg.lora, cfg.train)
    return prepare_quantized(model, cfg) if prepare_kbit else model


def prepare_quantized(model: Any, cfg: RunConfig) -> Any:
    """peft's k-bit preparation for a 4-bit (QLoRA) model; other models pass through."""
    if not cfg.lora.qlora:
        return model
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=cfg.train.gradient_checkpointing)


def load_reference(cfg: RunConfig) -> Any:
    """The --ref-model, or None: TRL then uses a frozen copy of the starting policy, or with
    LoRA the policy's base with adapters disabled (no second copy in memory)."""
    if not cfg.model.ref_model:
        return None
    from align.models import load_causal_lm

    return load_causal_lm(cfg.model.ref_model, cfg.model, cfg.lora, cfg.train)


def dataset(data: Any, tokenizer: Any, cfg: RunConfig, *, shuffle: bool = False,
            rows: list[dict[str, Any]] | None = None, on_disk: bool = False) -> Any:
    """Validated rows -> datasets.Dataset, prompts cut to --max-prompt-length (None stays None).

    ``shuffle`` orders the rows with --seed, for trainers that read data sequentially (KTO).
    ``on_disk`` backs the dataset with files under the align cache, named by its content, so
    that what TRL caches beside it (tokenized data, precomputed reference log-probs, keyed by
    the dataset's fingerprint and the model's hash) is found again by later runs.
    """
    if data is None and rows is None:
        return None
    from datasets import Dataset

    from align.data.truncate import truncate_prompts

    rows = list(data.rows if rows is None else rows)
    rows, n_cut = truncate_prompts(rows, tokenizer, cfg.data.max_prompt_length)
    if n_cut:
        click.echo(f"{n_cut} of {len(rows)} prompts are longer than --max-prompt-length "
                   f"{cfg.data.max_prompt_length} tokens; kept their last tokens")
    if shuffle:
        random.Random(cfg.train.seed).shuffle(rows)
    return disk_backed(rows) if on_disk else Dataset.from_list(rows)


def trainer_inputs(cfg: RunConfig, tokenizer: Any, data: Any, eval_data: Any,
                   callbacks: Sequence[Any], *, task_type: str = "CAUSAL_LM",
                   **dataset_options: Any) -> dict[str, Any]:
    """The keyword arguments every TRL trainer takes alike: training and evaluation datasets
    (``dataset_options`` go to :func:`dataset`), tokenizer, LoRA config and callbacks."""
    from align.models import lora_config

    return {"train_dataset": dataset(data, tokenizer, cfg, **dataset_options),
            "eval_dataset": dataset(eval_data, tokenizer, cfg, **dataset_options),
            "processing_class": tokenizer, "peft_config": lora_config(cfg.lora, task_type),
            "callbacks": list(callbacks)}


def disk_backed(rows: list[dict[str, Any]]) -> Any:
    """A Dataset stored under ``cache_dir()/datasets/<content hash>``, reused when present."""
    import hashlib

    from datasets import Dataset, load_from_disk

    digest = hashlib.sha256(json.dumps(rows, sort_keys=True, ensure_ascii=False)
                            .encode("utf-8")).hexdigest()[:24]
    path = cache_dir() / "datasets" / digest
    if not (path / "dataset_info.json").exists():
        tmp = path.with_name(path.name + ".tmp")
        Dataset.from_list(rows).save_to_disk(str(tmp))
        tmp.replace(path)  # atomic: a killed run never leaves a half-written dataset
    return load_from_disk(str(path))


def to_dataset(data: Any, drop: tuple[str, ...] = ()) -> Any:
    """Validated rows -> datasets.Dataset as they are (None stays None)."""
    if data is None:
        return None
    from datasets import Dataset

    return Dataset.from_list([{k: v for k, v in r.items() if k not in drop} for r in data.rows])


def resume_checkpoint(cfg: RunConfig) -> tuple[str | None, int | None]:
    """The checkpoint to resume from (with --resume: the newest complete one) and its step."""
    if not cfg.train.resume:
        return None, None
    ckpt = checkpoints.latest(Path(cfg.train.output_dir))
    if ckpt is None:
        raise AlignError(f"--resume: no complete checkpoint in {cfg.train.output_dir}")
    return str(ckpt.path), ckpt.step


def metrics_logger(cfg: RunConfig, resume_step: int | None) -> MetricsLogger:
    return MetricsLogger(cfg.train.output_dir, tensorboard=cfg.train.report_to == "tensorboard",
                         resume_step=resume_step)


def train(trainer: Any, cfg: RunConfig, resume_from: str | None) -> dict[str, Any]:
    """Train (resuming if asked); return the run's metrics with the first and last loss. A
    full disk or a read-only directory met while saving a checkpoint is an AlignError."""
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
