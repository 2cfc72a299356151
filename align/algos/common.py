"""What every TRL-backed adapter shares: mapping TrainArgs to a TRL config, datasets, the
metrics callback, resume and the final save. Algorithm-specific fields stay in each adapter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from align.config import RunConfig
from align.metrics import MetricsLogger, trainer_callback  # noqa: F401 (re-exported)
from align.runner import latest_checkpoint

# ms-swift's defaults: 1e-5 for full fine-tuning, 1e-4 for LoRA/QLoRA adapters.
DEFAULT_LR_FULL = 1e-5
DEFAULT_LR_LORA = 1e-4


def learning_rate(cfg: RunConfig) -> float:
    """--learning-rate, else ms-swift's default for the training mode."""
    if cfg.train.learning_rate is not None:
        return cfg.train.learning_rate
    return DEFAULT_LR_LORA if cfg.lora.enabled else DEFAULT_LR_FULL


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def trl_config(cfg: RunConfig, config_cls: type, has_eval: bool = False, **fields: Any) -> Any:
    """Build a TRL config (DPOConfig, KTOConfig, ...) from our TrainArgs plus ``fields``."""
    t = cfg.train
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
        save_total_limit=t.save_total_limit,
        seed=t.seed,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_ratio,  # a float in [0, 1) is a ratio in transformers 5
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        bf16=t.bf16,
        fp16=t.fp16,
        gradient_checkpointing=t.gradient_checkpointing,
        deepspeed=t.deepspeed,
        report_to="none",  # align writes metrics.jsonl and TensorBoard itself
        use_cpu=not on_gpu(),
        eval_strategy="steps" if has_eval else "no",
        eval_steps=t.save_steps if has_eval else None,
        trust_remote_code=cfg.model.trust_remote_code,
    )
    if "max_length" in config_cls.__dataclass_fields__:
        kwargs["max_length"] = cfg.data.max_length
    kwargs.update(fields)
    return config_cls(**kwargs)


def to_dataset(data: Any, drop: tuple[str, ...] = ()) -> Any:
    """Validated rows -> datasets.Dataset (None stays None)."""
    if data is None:
        return None
    from datasets import Dataset

    rows = [{k: v for k, v in r.items() if k not in drop} for r in data.rows]
    return Dataset.from_list(rows)


def resume_checkpoint(cfg: RunConfig) -> tuple[str | None, int | None]:
    """The checkpoint to resume from (with --resume) and its global step."""
    if not cfg.train.resume:
        return None, None
    ckpt = latest_checkpoint(Path(cfg.train.output_dir))
    state = json.loads((ckpt / "trainer_state.json").read_text()) \
        if (ckpt / "trainer_state.json").exists() else {}
    return str(ckpt), int(state.get("global_step", 0))


def metrics_logger(cfg: RunConfig, resume_step: int | None) -> MetricsLogger:
    return MetricsLogger(cfg.train.output_dir, tensorboard=cfg.train.report_to == "tensorboard",
                         resume_step=resume_step)


def train_and_save(trainer: Any, cfg: RunConfig, tokenizer: Any, resume_from: str | None
                   ) -> dict[str, Any]:
    """Train (resuming if asked), save the final model/adapter and tokenizer to --output-dir."""
    result = trainer.train(resume_from_checkpoint=resume_from)
    trainer.save_model(cfg.train.output_dir)
    if tokenizer is not None:
        tokenizer.save_pretrained(cfg.train.output_dir)
    metrics = dict(result.metrics)
    history = [r for r in trainer.state.log_history if "loss" in r]
    if history:
        metrics["first_loss"] = history[0]["loss"]
        metrics["last_loss"] = history[-1]["loss"]
    click.echo(f"saved to {cfg.train.output_dir}")
    return metrics
