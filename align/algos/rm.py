"""Reward-model training (Bradley-Terry, Ouyang et al. 2022) on TRL's RewardTrainer.

The output directory loads with plain ``AutoModelForSequenceClassification.from_pretrained``
(num_labels 1, ``config.pad_token_id`` set), which is how PPO loads its reward model and
initialises its critic:

- full fine-tuning: the trained model;
- LoRA/QLoRA: the merged model, with the adapter (LoRA weights + score head) in ``adapter/``;
- always: ``value_head.safetensors`` with the score head as ``v_head.summary.weight`` (1, H)
  and ``v_head.summary.bias`` (1,) (zeros when the head has no bias), the layout of TRL's
  value-head models that ms-swift's guide describes.

At the end the pairwise accuracy (share of held-out pairs whose chosen answer scores higher)
is printed and returned as ``eval_pairwise_accuracy``.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import click

from align import checkpoints
from align.config import arg, validate_fields

# Held out for the final accuracy when neither --eval-dataset nor --eval-split is given.
HOLDOUT_FRACTION = 0.1
VALUE_HEAD_FILE = "value_head.safetensors"
ADAPTER_SUBDIR = "adapter"


@dataclass
class RMArgs:
    center_rewards_coefficient: float | None = arg(
        None, "Pull mean rewards towards zero (Eisenstein et al. 2023); e.g. 0.01.",
        source="TRL default", bounds="[0, inf)")

    def __post_init__(self) -> None:
        validate_fields(self)


def hold_out(cfg: Any, data: Any, eval_data: Any) -> tuple[Any, Any, str]:
    """(train, eval, description): ``eval_data`` if given, else a seeded 10% of ``data``
    (at least one pair); with fewer than 2 pairs there is nothing to hold out (eval None)."""
    from align.data.store import select

    if eval_data is not None:
        return data, eval_data, "held-out"
    n = len(data.rows)
    if n < 2:
        return data, None, "training"
    order = list(range(n))
    random.Random(cfg.train.seed).shuffle(order)
    n_eval = max(1, round(n * HOLDOUT_FRACTION))
    click.echo(f"rm: holding out {n_eval} of {n} pairs ({HOLDOUT_FRACTION:.0%}) for the "
               "final accuracy (set --eval-split or --eval-dataset to choose)")
    return (dataclasses.replace(data, rows=select(data.rows, order[n_eval:])),
            dataclasses.replace(data, rows=select(data.rows, order[:n_eval])), "held-out")


def with_margins(rows: Any) -> Any:
    """TRL batches the margin column as a tensor: when some pairs have one, the others get
    0.0 (plain Bradley-Terry); when none has one, the column is dropped. Returns a
    ``datasets.Dataset`` (the Arrow data of validated rows, or one built from a list)."""
    from align.data.store import as_dataset

    ds = as_dataset(rows)
    if "margin" not in ds.column_names:
        return ds
    if all(m is None for m in ds["margin"]):
        return ds.remove_columns("margin")
    return ds.map(lambda b: {"margin": [float(m or 0.0) for m in b["margin"]]}, batched=True,
                  desc="Filling missing margins")


def build_trainer(cfg: Any, data: Any, eval_data: Any = None,
                  callbacks: Sequence[Any] = ()) -> tuple[Any, Any]:
    """A RewardTrainer for ``cfg`` (see align.algos.common for the adapter pattern)."""
    from trl import RewardConfig, RewardTrainer

    from align.algos import common
    from align.models import load_sequence_classifier

    args = common.trl_config(cfg, RewardConfig, has_eval=eval_data is not None,
                             center_rewards_coefficient=cfg.algo.center_rewards_coefficient)
    tokenizer = common.load_tokenizer(cfg, data)
    model = load_sequence_classifier(cfg.model.model, cfg.model, cfg.lora, cfg.train,
                                     quantize=cfg.lora.qlora)
    model = common.prepare_quantized(model, cfg)

    def margins(d: Any) -> Any:  # the rows with their margin column filled in
        return None if d is None else SimpleNamespace(rows=with_margins(d.rows))

    trainer = RewardTrainer(model=model, args=args,
                            **common.trainer_inputs(cfg, tokenizer, margins(data),
                                                    margins(eval_data), callbacks,
                                                    task_type="SEQ_CLS"))
    return trainer, tokenizer


def pairwise_accuracy(model: Any, dataset: Any, pad_token_id: int, batch_size: int = 8) -> float:
    """Share of pairs whose chosen sequence scores strictly higher than the rejected one.

    ``dataset`` holds token ids (``chosen_ids``, ``rejected_ids``) as RewardTrainer prepares them.
    """
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = dataset[start:start + batch_size]
            seqs = batch["chosen_ids"] + batch["rejected_ids"]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for i, s in enumerate(seqs):  # right padding, as the trainer's collator does
                ids[i, :len(s)] = torch.tensor(s)
                mask[i, :len(s)] = 1
            scores = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, 0]
            chosen, rejected = scores.chunk(2)
            correct += int((chosen > rejected).sum())
    model.train(was_training)
    return correct / max(1, len(dataset))


def write_value_head(model_dir: str | Path) -> Path:
    """Copy the saved score head into ``value_head.safetensors`` (keys in the module doc)."""
    import json

    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    model_dir = Path(model_dir)
    index = model_dir / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) \
        if index.exists() else ["model.safetensors"]
    head: dict[str, torch.Tensor] = {}
    for name in files:
        with safe_open(str(model_dir / name), framework="pt") as f:
            for key in f.keys():
                if key.split(".")[-2:-1] in (["score"], ["classifier"]):
                    head[key.rsplit(".", 1)[-1]] = f.get_tensor(key)
    if "weight" not in head:
        raise RuntimeError(f"{model_dir}: no score/classifier head found in the saved weights")
    weight = head["weight"].contiguous()
    bias = head.get("bias", torch.zeros(weight.shape[0], dtype=weight.dtype)).contiguous()
    path = model_dir / VALUE_HEAD_FILE
    save_file({"v_head.summary.weight": weight, "v_head.summary.bias": bias}, str(path),
              metadata={"format": "pt"})
    return path


def save_reward_model(trainer: Any, cfg: Any, tokenizer: Any) -> None:
    """Save so that the output dir loads as a sequence classifier (see the module doc)."""
    from align.merge import merge_adapter

    out = Path(cfg.train.output_dir)
    if cfg.lora.enabled:
        adapter = out / ADAPTER_SUBDIR
        trainer.save_model(str(adapter))
        tokenizer.save_pretrained(str(adapter))
        merge_adapter(adapter, out, base=cfg.model.model,
                      trust_remote_code=cfg.model.trust_remote_code)
        click.echo(f"saved merged reward model to {out} (adapter in {adapter})")
    else:
        trainer.save_model(str(out))
        tokenizer.save_pretrained(str(out))
        click.echo(f"saved reward model to {out}")
    write_value_head(out)


def run(cfg: Any, data: Any, eval_data: Any = None) -> dict[str, Any]:
    from align.algos import watched

    train_data, held_out, where = hold_out(cfg, data, eval_data)
    resume_from, resume_step = watched.resume_checkpoint(cfg)
    w = watched.watch(cfg, resume_from, resume_step)
    trainer, tokenizer = build_trainer(cfg, train_data, held_out, callbacks=w.callbacks())
    scored: dict[str, float] = {}

    def score_and_save(trainer: Any, cfg: Any, tokenizer: Any) -> None:
        watched.check_finite(trainer.model, cfg, "at the end of training")
        pairs = trainer.eval_dataset if trainer.eval_dataset is not None \
            else trainer.train_dataset
        accuracy = pairwise_accuracy(trainer.model, pairs, tokenizer.pad_token_id,
                                     cfg.train.per_device_train_batch_size)
        click.echo(f"pairwise accuracy on {len(pairs)} {where} pairs: {accuracy:.3f}")
        scored["eval_pairwise_accuracy"] = accuracy
        with checkpoints.writing(cfg.train.output_dir, "the final reward model"):
            save_reward_model(trainer, cfg, tokenizer)

    metrics = watched.train_watched(trainer, cfg, tokenizer, resume_from, w,
                                   save_model=score_and_save)
    return metrics | scored
