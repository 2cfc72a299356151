"""What every training run does before and around its algorithm.

1. check flag combinations that need no model (reward model needed? QLoRA without a GPU?)
2. validate the dataset (and eval dataset) before any model loads
3. print the resolved config and the plan (what would be loaded)
4. stop here on --dry-run; otherwise prepare the output dir (resume or refuse to clobber),
   save the resolved config, seed everything, and call the algorithm's runner
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import time
from pathlib import Path
from typing import Any

import click

from align.config import RunConfig
from align.data import Validated, load_valid
from align.errors import AlignError
from align.options import format_config
from align.registry import AlgoSpec

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
CONFIG_FILE = "align_config.yaml"


def _looks_local(path: str) -> bool:
    return path.startswith((".", "/", "~")) or path.endswith(".gguf") or path.count("/") != 1


def check_model_path(flag: str, path: str | None) -> None:
    """A path that is clearly local must exist; ``org/name`` may be a hub id."""
    if path and _looks_local(path) and not Path(path).expanduser().exists():
        raise AlignError(f"{flag} {path}: no such file or directory")


def check_plan(cfg: RunConfig, spec: AlgoSpec) -> None:
    """Flag combinations that are wrong whatever the data and models (no model is loaded)."""
    if not cfg.model.model:
        raise AlignError(f"--model is required for --algo {spec.name}")
    if not cfg.data.dataset:
        raise AlignError(f"--dataset is required for --algo {spec.name} "
                         f"({spec.data_format} format; see `align data validate --help`)")
    if spec.reward_model == "required" and not cfg.model.reward_model:
        raise AlignError(f"--algo {spec.name} needs --reward-model (train one with "
                         "`align rlhf --algo rm`)")
    if spec.reward_model == "no" and cfg.model.reward_model:
        raise AlignError(f"--reward-model is not used by --algo {spec.name}")
    if not spec.needs_ref and cfg.model.ref_model:
        raise AlignError(f"--ref-model is not used by --algo {spec.name} (it is reference-free)")
    for flag, path in (("--model", cfg.model.model), ("--ref-model", cfg.model.ref_model),
                       ("--reward-model", cfg.model.reward_model)):
        check_model_path(flag, path)
    if cfg.lora.lora and cfg.lora.qlora:
        raise AlignError("--lora and --qlora exclude each other (--qlora already trains LoRA "
                         "adapters, on a 4-bit base)")
    if cfg.train.deepspeed and not Path(cfg.train.deepspeed).is_file():
        raise AlignError(f"--deepspeed {cfg.train.deepspeed}: no such file")
    if cfg.lora.qlora or cfg.train.fp16:
        _check_gpu(cfg)


def _check_gpu(cfg: RunConfig) -> None:
    import torch

    if not torch.cuda.is_available():
        if cfg.lora.qlora:
            raise AlignError("--qlora needs a CUDA GPU (bitsandbytes 4-bit kernels); on this "
                             "machine use --lora instead")
        if cfg.train.fp16:
            raise AlignError("--fp16 needs a CUDA GPU; drop it to train in float32 on CPU "
                             "(--bf16 works on CPU, slowly)")
    if cfg.lora.qlora:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as e:
            raise AlignError("--qlora needs bitsandbytes: pip install 'align[qlora]'") from e


def load_data(cfg: RunConfig, spec: AlgoSpec) -> tuple[Validated, Validated | None]:
    """Validate train (and eval) data; split off --eval-split of train when asked."""
    train = load_valid(cfg.data.dataset, spec.data_format, cfg.data.columns)
    evaluation = None
    if cfg.data.eval_dataset:
        evaluation = load_valid(cfg.data.eval_dataset, spec.data_format, cfg.data.columns)
    elif cfg.data.eval_split > 0:
        rows = list(train.rows)
        random.Random(cfg.train.seed).shuffle(rows)
        n_eval = max(1, int(round(len(rows) * cfg.data.eval_split)))
        if n_eval >= len(rows):
            raise AlignError(f"--eval-split {cfg.data.eval_split} leaves no training records "
                             f"out of {len(rows)}")
        evaluation = dataclasses.replace(train, rows=rows[:n_eval])
        train = dataclasses.replace(train, rows=rows[n_eval:])
    return train, evaluation


def describe_plan(cfg: RunConfig, spec: AlgoSpec) -> list[str]:
    """Which models would be loaded, and how, in plain words."""
    mode = "QLoRA (4-bit base + LoRA)" if cfg.lora.qlora else (
        f"LoRA r={cfg.lora.lora_r}" if cfg.lora.lora else "full fine-tuning")
    lines = [f"policy: {cfg.model.model} ({mode})"]
    if spec.needs_ref and getattr(cfg.algo, "beta", 1.0) != 0.0:
        if cfg.model.ref_model:
            lines.append(f"reference: {cfg.model.ref_model} (frozen)")
        elif cfg.lora.enabled:
            lines.append("reference: the policy's base with adapters disabled (no extra copy)")
        else:
            lines.append(f"reference: {cfg.model.model} (frozen copy)")
    if cfg.model.reward_model:
        lines.append(f"reward model: {cfg.model.reward_model} (frozen)")
    if spec.name == "ppo":
        critic = getattr(cfg.algo, "value_model", None) or cfg.model.reward_model
        lines.append(f"critic: initialised from {critic}")
    return lines


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The highest-numbered complete ``checkpoint-N`` directory, or None."""
    if not output_dir.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in output_dir.iterdir()
             if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))]
    return max(found)[1] if found else None


def prepare_output_dir(cfg: RunConfig) -> Path:
    """Create the output dir; refuse to mix a new run into an old one unless --resume."""
    if not cfg.train.output_dir:
        if cfg.train.resume:
            raise AlignError("--resume needs --output-dir (the run to continue)")
        cfg.train.output_dir = f"runs/{cfg.algo_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(cfg.train.output_dir)
    ckpt = latest_checkpoint(out)
    if cfg.train.resume and ckpt is None:
        raise AlignError(f"--resume: no checkpoint-N directory in {out}; drop --resume to start "
                         "a new run")
    if not cfg.train.resume and ckpt is not None:
        raise AlignError(f"{out} holds checkpoints of an earlier run ({ckpt.name}); pass --resume "
                         "to continue it, or choose another --output-dir")
    out.mkdir(parents=True, exist_ok=True)
    return out


def save_config(cfg: RunConfig, out: Path) -> None:
    """Write the resolved config; `--config DIR/align_config.yaml` repeats the run."""
    import yaml

    (out / CONFIG_FILE).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False),
                                   encoding="utf-8")


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def execute(cfg: RunConfig, spec: AlgoSpec, dry_run: bool = False) -> dict[str, Any] | None:
    """Run ``spec`` with ``cfg`` (see the module docstring for the steps)."""
    check_plan(cfg, spec)
    train, evaluation = load_data(cfg, spec)
    click.echo(format_config(cfg))
    click.echo(f"data: {train.summary()}")
    if evaluation is not None:
        click.echo(f"eval data: {len(evaluation.rows)} records")
    for line in describe_plan(cfg, spec):
        click.echo(line)
    if dry_run:
        click.echo("dry run: config and data are valid; no model was loaded")
        return None
    out = prepare_output_dir(cfg)
    save_config(cfg, out)
    click.echo(f"output: {out}")
    seed_everything(cfg.train.seed)
    result = spec.run(cfg, train, evaluation)
    if result:
        (out / "final_metrics.json").write_text(json.dumps(result, indent=2, default=float),
                                                encoding="utf-8")
    return result
