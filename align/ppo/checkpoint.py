"""Atomic checkpoints of everything a PPO run needs to continue exactly where it stopped.

``checkpoint-N/`` holds:
- ``actor/``, ``critic/``: ``save_pretrained`` output (a full model, or a LoRA adapter; on the
  shared LoRA base the critic adapter with ``value_head.safetensors``), loadable on their own;
  the actor directory carries the tokenizer;
- ``optim.pt``: the optimizer (actor and critic groups) and the LR schedule (read back with
  ``torch.load(weights_only=True)``);
- ``state.json``: step, number of processes, prompt position, KL controller, reward statistics,
  health monitor and the rest of the trainer's state;
- ``deepspeed/`` under ``--deepspeed``: the engine's own checkpoint (each process's optimizer
  partition) in place of the optimizer in ``optim.pt``;
- ``rank-R.pt``, one per process: that process's torch/CUDA, Python and NumPy RNG states and
  data positions (weights-only as well).

In a run of several processes, rank 0 writes everything but the ``rank-R.pt`` files, every
process writes its own, and rank 0 renames the directory into place once all are written.


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

STATE_FILE, OPTIM_FILE, DEEPSPEED_DIR = "state.json", "optim.pt", "deepspeed"


def rng_state() -> dict[str, Any]:
    """This process's Python, NumPy, torch and CUDA RNG states (loadable with weights_only)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {"python": [version, list(internal), gauss],
             "numpy": [name, keys.tolist(), pos, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_models(model: Any, directory: Path, weights: dict[str, Any] | None = None) -> None:
    """``actor/`` and ``critic/`` of an ActorCritic under ``directory`` (see the docstring);
    ``weights`` (:func:`gathered_weights`, under ZeRO-3) in place of the module's own."""
    from align.ppo.models import ACTOR, CRITIC, VALUE_HEAD_FILE

    def part(prefix: str) -> dict[str, Any] | None:
        if weights is None:
            return None
        return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}

    if not model.shared:
        model.actor.save_pretrained(str(directory / "actor"), state_dict=part("actor."))
        model.critic.save_pretrained(str(directory / "critic"), state_dict=part("critic."))
        return
    from safetensors.torch import save_file

    actor = part("actor.")
    model.actor.save_pretrained(str(directory / "actor"), selected_adapters=[ACTOR],
                                state_dict=actor)
    model.actor.save_pretrained(str(directory), selected_adapters=[CRITIC],  # -> critic/
                                state_dict=actor)
    head = part("value_head.") or model.value_head.state_dict()
    save_file({k: v.detach().cpu().contiguous() for k, v in head.items()},
              str(directory / CRITIC / VALUE_HEAD_FILE))


def gathered_weights(model: Any, dist: Any) -> dict[str, Any] | None:
    """Under ZeRO-3, where each process holds a shard of every weight: the trained weights
    (with LoRA the adapters and the value head, else the whole actor and critic), gathered
    one layer at a time into rank 0's CPU memory and keyed as in ``model.state_dict()``;
    None on the other ranks and without ZeRO-3. Every process must call it."""
    if not dist.zero3:
        return None
    lora = hasattr(model.actor, "peft_config")
    return dist.engine._zero3_consolidated_16bit_state_dict(exclude_frozen_parameters=lora)


def nonfinite_weights(model: Any, dist: Any) -> list[str]:
    """Names of the trained weights holding NaN/inf, the same on every process (under ZeRO-3
    each process checks its own shards)."""
    from align.health.nonfinite import nonfinite_parameters

    bad = nonfinite_parameters(model)
    if dist.zero3:
        bad = list(dict.fromkeys(dist.gather_objects(bad)))
    return bad


def load_models(model: Any, directory: Path) -> None:
    """Overwrite the trainable weights of an ActorCritic from :func:`save_models` output."""
    from safetensors.torch import load_file

    from align.ppo.models import ACTOR, CRITIC, VALUE_HEAD_FILE

    if not model.shared:
        load_model_weights(model.actor, directory / "actor")
        load_model_weights(model.critic, directory / "critic")
        return
    from peft import set_peft_model_state_dict

    for name, sub in ((ACTOR, "actor"), (CRITIC, "critic")):
        set_peft_model_state_dict(model.actor, load_file(str(directory / sub /
                                                             "adapter_model.safetensors")),
                                  adapter_name=name)
    head = load_file(str(directory / CRITIC / VALUE_HEAD_FILE))
    model.value_head.load_state_dict({k: v.to(model.value_head.weight.device)
                                      for k, v in head.items()})


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
                    tensors: dict[str, Any], own: dict[str, Any], dist: Any,
                    run: dict[str, Any] | None = None, healthy: bool = True) -> Path:
    """Write checkpoint-``step`` atomically: ``state`` (JSON-able) and ``tensors`` from rank 0,
    ``own`` (this process's RNG and data positions) and, under DeepSpeed, its optimizer
    partition from every process; ``run`` is the record its marker keeps
    (align.checkpoints.run_record)."""
    from align.health.nonfinite import describe

    final = checkpoints.checkpoint_dir(out, step)
    tmp = final.with_name(final.name + ".tmp")
    bad = nonfinite_weights(roles.model, dist)
    if bad:
        raise NonFiniteWeights(f"{len(bad)} weight tensors are not finite ({describe(bad)}); "
                               f"{final.name} was not written")
    weights = gathered_weights(roles.model, dist)
    if dist.is_main:
        if tmp.exists():
            shutil.rmtree(tmp)  # left by a run killed while saving
        with checkpoints.writing(out, final.name):
            tmp.mkdir(parents=True)
            save_models(roles.model, tmp, weights)
            roles.tokenizer.save_pretrained(str(tmp / "actor"))
            torch.save(tensors, tmp / OPTIM_FILE)
            (tmp / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
    dist.barrier()
    if dist.engine is not None:  # every process writes its part of the optimizer
        dist.engine.save_checkpoint(str(tmp / DEEPSPEED_DIR), tag="state",
                                    exclude_frozen_parameters=True)
    torch.save(own, tmp / f"rank-{dist.rank}.pt")
    dist.barrier()
    if dist.is_main:
        with checkpoints.writing(out, final.name):
            checkpoints.mark_complete(tmp, step, run or {}, healthy=healthy)
            if final.exists():  # saving a step again: the old one goes first, at once
                checkpoints.remove(final)
            os.replace(tmp, final)
            checkpoints.fsync_dir(out)
    dist.barrier()
    return final


def load_checkpoint(ckpt: Path, roles: Roles, dist: Any
                    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Load actor and critic weights into ``roles``; return (state, tensors, this process's
    state). A run saved by another number of processes continues, though not bit for bit:
    each process then takes the RNG state of rank ``rank % saved``."""
    if not dist.zero3:  # ZeRO-3's shards come back with the engine's checkpoint
        load_models(roles.model, ckpt)
    if dist.engine is not None:
        dist.engine.load_checkpoint(str(ckpt / DEEPSPEED_DIR), tag="state",
                                    load_optimizer_states=True, load_lr_scheduler_states=False,
                                    load_module_strict=False)
    state = json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8"))
    tensors = torch.load(ckpt / OPTIM_FILE, weights_only=True, map_location="cpu")
    saved = int(state.get("world", 1))
    if saved != dist.world and dist.is_main:
        import click

        click.echo(f"warning: {ckpt} was saved by {saved} process(es), this run has "
                   f"{dist.world}: it continues, but not exactly as the saved run would have",
                   err=True)
    own = torch.load(ckpt / f"rank-{dist.rank % saved}.pt", weights_only=True,
                     map_location="cpu")
    return state, tensors, own
