"""Atomic checkpoints of everything a PPO run needs to continue exactly where it stopped.

``checkpoint-N/`` holds:
- ``actor/``, ``critic/``: ``save_pretrained`` output (a full model, or a LoRA adapter with the
  value head), loadable on their own; the actor directory carries the tokenizer;
- ``optim.pt``: both optimizers and LR schedulers, and the torch RNG states (tensors only, read
  back with ``torch.load(weights_only=True)``);
- ``state.json``: step, data positions, KL controller, reward statistics, health monitor, the
  Python and NumPy RNG states and the rest of the trainer's state.

A checkpoint is written to ``checkpoint-N.tmp``, marked complete (``align.checkpoints``: files
fsync'd, then the marker with the run's config) and renamed into place (``os.replace``), so a
run killed mid-save leaves a ``.tmp`` directory that resume moves aside, never a checkpoint
that looks complete but is not. Weights that are not finite are never saved.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from align import checkpoints
from align.errors import AlignError
from align.ppo.models import Roles

STATE_FILE, OPTIM_FILE = "state.json", "optim.pt"


def rng_state() -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON-able Python/NumPy RNG states, tensor torch/CUDA RNG states)."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    plain = {"python": random.getstate(), "numpy": [name, keys.tolist(), pos, has_gauss, cached]}
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state_all()
    return plain, tensors


def set_rng_state(plain: dict[str, Any], tensors: dict[str, Any]) -> None:
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(tensors["cuda"])


def save_model(model: Any, directory: Path) -> None:
    model.save_pretrained(str(directory))


def load_model_weights(model: Any, directory: Path) -> None:
    """Overwrite ``model``'s trainable weights in place from its ``save_pretrained`` output."""
    from safetensors.torch import load_file

    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(directory / "adapter_model.safetensors")))
        return
    index = directory / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) \
        if index.exists() else ["model.safetensors"]
    state: dict[str, torch.Tensor] = {}
    for name in files:
        state.update(load_file(str(directory / name)))
    missing = [n for n, _ in model.named_parameters() if n not in state]
    if missing:
        raise RuntimeError(f"{directory}: checkpoint lacks {missing[:3]}")
    model.load_state_dict(state, strict=False)


class NonFiniteWeights(AlignError):
    """The weights hold NaN/inf: the checkpoint was not written."""

    exit_code = 3


def save_checkpoint(out: Path, step: int, roles: Roles, state: dict[str, Any],
                    tensors: dict[str, Any], run: dict[str, Any] | None = None,
                    healthy: bool = True) -> Path:
    """Write checkpoint-``step`` atomically; ``state`` is JSON-able, ``tensors`` for torch.save,
    ``run`` the record its marker keeps (align.checkpoints.run_record)."""
    from align.health.nonfinite import describe, nonfinite_parameters

    bad = nonfinite_parameters(roles.actor, roles.critic)
    if bad:
        raise NonFiniteWeights(f"{len(bad)} weight tensors are not finite ({describe(bad)}); "
                               f"checkpoint-{step} was not written")
    final, tmp = out / f"checkpoint-{step}", out / f"checkpoint-{step}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)  # left by a run killed while saving
    with checkpoints.writing(out, f"checkpoint-{step}"):
        tmp.mkdir(parents=True)
        save_model(roles.actor, tmp / "actor")
        roles.tokenizer.save_pretrained(str(tmp / "actor"))
        save_model(roles.critic, tmp / "critic")
        torch.save(tensors, tmp / OPTIM_FILE)
        (tmp / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
        checkpoints.mark_complete(tmp, step, run or {}, healthy=healthy)
        if final.exists():  # saving a step again: the old one goes first, at once
            checkpoints.remove(final)
        os.replace(tmp, final)
        checkpoints.fsync_dir(out)
    return final


def load_checkpoint(ckpt: Path, roles: Roles) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load actor and critic weights into ``roles``; return (state, tensors) of the checkpoint."""
    load_model_weights(roles.actor, ckpt / "actor")
    load_model_weights(roles.critic, ckpt / "critic")
    state = json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8"))
    tensors = torch.load(ckpt / OPTIM_FILE, weights_only=True, map_location="cpu")
    return state, tensors
