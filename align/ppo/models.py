"""The four PPO roles: actor, reference, reward model and critic, in full, LoRA or QLoRA mode.

- actor: the policy, from ``--model`` (LoRA/QLoRA: an adapter on it).
- reference: frozen, from ``--ref-model`` or ``--model``. With LoRA and no ``--ref-model`` it is
  the actor with its adapter disabled, so no copy is loaded.
- reward model: a frozen sequence classifier from ``--reward-model``.
- critic: the reward model's backbone with its score head applied at every position as the
  per-token value head (Secrets of RLHF: initialise the critic from the RM), or
  ``--value-model``. With LoRA it is an adapter plus a trainable copy of the score head; when
  it starts from the reward model, the reward model *is* the critic with its adapter disabled.

Dropout is turned off in every model, as TRL and OpenRLHF do for PPO, so that log-probs and
values at rollout time and at update time agree.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor

from align.config import RunConfig
from align.errors import AlignError
from align.models import (load_causal_lm, load_sequence_classifier, load_tokenizer,
                          lora_config)

VALUE_HEAD_FILE = "value_head.safetensors"


@dataclass
class Roles:
    """The models of one PPO run and where they compute."""

    actor: Any  # causal LM (a peft model with LoRA), trainable
    critic: Any  # sequence classifier (a peft model with LoRA), trainable
    ref: Any | None  # frozen causal LM; None: the actor with its adapter disabled
    reward: Any | None  # frozen sequence classifier; None: the critic with its adapter disabled
    tokenizer: Any
    device: torch.device
    offload_ref: bool = False
    offload_reward: bool = False

    @contextmanager
    def reference(self) -> Iterator[Any]:
        """The reference policy, ready to call (adapter disabled or moved onto the device)."""
        if self.ref is None:
            with self.actor.disable_adapter():
                yield self.actor
        else:
            with _on_device(self.ref, self.device, self.offload_ref):
                yield self.ref

    @contextmanager
    def reward_model(self) -> Iterator[Any]:
        """The reward model, ready to call."""
        if self.reward is None:
            with self.critic.disable_adapter():
                yield self.critic
        else:
            with _on_device(self.reward, self.device, self.offload_reward):
                yield self.reward


@contextmanager
def _on_device(model: Any, device: torch.device, offload: bool) -> Iterator[Any]:
    """Move an offloaded model to ``device`` for the duration of the block, then back to CPU."""
    if offload:
        model.to(device)
    try:
        yield model
    finally:
        if offload:
            model.to("cpu")
            if device.type == "cuda":
                torch.cuda.empty_cache()


def _hf_model(model: Any) -> Any:
    """The transformers model inside a peft wrapper (LoRA layers stay live in it)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def token_scores(model: Any, input_ids: Tensor, attention_mask: Tensor,
                 position_ids: Tensor) -> Tensor:
    """A sequence classifier's score head applied to every position's hidden state.

    HF ``*ForSequenceClassification`` models compute ``score(hidden)`` at all positions and then
    pool the last non-pad token; running backbone and head ourselves gives per-token values for
    the critic, and lets the reward be read at the exact last response token (whatever the pad
    token is). Shapes: input_ids, attention_mask, position_ids (B, L). Returns (B, L) float32.
    """
    hf = _hf_model(model)
    backbone = getattr(hf, hf.base_model_prefix)
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask,
                      position_ids=position_ids, use_cache=False).last_hidden_state
    head_dtype = next(hf.score.parameters()).dtype  # e.g. an fp32 head on a bf16 backbone
    return hf.score(hidden.to(head_dtype)).squeeze(-1).float()


def load_value_head(model: Any, directory: str) -> None:
    """Copy ``value_head.safetensors`` (ms-swift's RM layout) into the score head, if present."""
    path = Path(directory) / VALUE_HEAD_FILE
    if not path.is_file():
        return
    from safetensors.torch import load_file

    head = _hf_model(model).score
    tensors = load_file(str(path))
    weights = [t for k, t in tensors.items() if k.endswith("weight") and t.shape == head.weight.shape]
    if not weights:
        raise AlignError(f"{path}: no weight of shape {tuple(head.weight.shape)} for the score head")
    with torch.no_grad():
        head.weight.copy_(weights[0])
        biases = [t for k, t in tensors.items() if k.endswith("bias") and t.numel() == 1]
        if head.bias is not None and biases:
            head.bias.copy_(biases[0].reshape(head.bias.shape))


def disable_dropout(model: Any) -> None:
    """Set every dropout probability to 0 (nn.Dropout modules and attention dropout rates)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0


def _freeze(model: Any) -> Any:
    model.requires_grad_(False)
    model.eval()
    return model


def _check_tokenizer(path: str, tokenizer: Any, cfg: RunConfig, flag: str) -> None:
    """The RM/critic must read the policy's token ids: their vocabularies have to match."""
    try:
        other = load_tokenizer(path, cfg.model)
    except AlignError:
        return  # no tokenizer saved with the model: assume the policy's
    if other.get_vocab() != tokenizer.get_vocab():
        raise AlignError(f"{flag} {path} uses a different tokenizer from --model; PPO scores the "
                         "policy's token ids directly, so train the reward model on the policy's "
                         "tokenizer (as TRL's and ms-swift's PPO require)")


def _device(cfg: RunConfig) -> torch.device:
    if cfg.lora.qlora:
        import os

        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _adapt(model: Any, cfg: RunConfig, task_type: str) -> Any:
    """Wrap ``model`` in a LoRA adapter (QLoRA: after preparing the 4-bit base)."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    if cfg.lora.qlora:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.train.gradient_checkpointing)
    return get_peft_model(model, lora_config(cfg.lora, task_type))


def load_roles(cfg: RunConfig) -> Roles:
    """Load actor, reference, reward model and critic for ``cfg`` (see the module docstring)."""
    m, lora, t, a = cfg.model, cfg.lora, cfg.train, cfg.algo
    tokenizer = load_tokenizer(m.model, m)
    critic_path = a.value_model or m.reward_model
    for flag, path in (("--reward-model", m.reward_model), ("--value-model", a.value_model)):
        if path:
            _check_tokenizer(path, tokenizer, cfg, flag)
    q = lora.qlora
    actor = load_causal_lm(m.model, m, lora, t, quantize=q)
    critic = load_sequence_classifier(critic_path, m, lora, t, quantize=q)
    load_value_head(critic, critic_path)
    ref = reward = None
    if not lora.enabled or m.ref_model:
        ref = _freeze(load_causal_lm(m.ref_model or m.model, m, lora, t, quantize=q))
    if not lora.enabled or a.value_model:
        reward = _freeze(load_sequence_classifier(m.reward_model, m, lora, t, quantize=q))
        load_value_head(reward, m.reward_model)
    if lora.enabled:
        actor, critic = _adapt(actor, cfg, "CAUSAL_LM"), _adapt(critic, cfg, "SEQ_CLS")
    device = _device(cfg)
    for model in (actor, critic, ref, reward):
        if model is None:
            continue
        disable_dropout(model)
        offloaded = (model is ref and a.offload_ref_model) or \
            (model is reward and a.offload_reward_model)
        if not q and not offloaded:
            model.to(device)
    if t.gradient_checkpointing:
        for model in (actor, critic):
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
    return Roles(actor=actor, critic=critic, ref=ref, reward=reward, tokenizer=tokenizer,
                 device=device, offload_ref=a.offload_ref_model,
                 offload_reward=a.offload_reward_model)


def trainable(model: Any) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def eos_token_ids(roles: Roles) -> list[int]:
    """Token ids that end a response: the tokenizer's EOS and the generation config's."""
    ids = {roles.tokenizer.eos_token_id}
    gen = getattr(_hf_model(roles.actor), "generation_config", None)
    extra = getattr(gen, "eos_token_id", None)
    ids.update(extra if isinstance(extra, (list, tuple)) else [extra])
    return sorted(i for i in ids if i is not None)
