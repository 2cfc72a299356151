"""The four PPO roles: actor, reference, reward model and critic, in full, LoRA or QLoRA mode.

- actor: the policy, from ``--model`` (LoRA/QLoRA: an adapter on it).
- reference: frozen, from ``--ref-model`` or ``--model``. With LoRA and no ``--ref-model`` it is
  the actor with its adapter disabled, so no copy is loaded.
- reward model: a frozen sequence classifier from ``--reward-model``; none when the rewards
  are rules only (align/ppo/rewards.py).
- critic: in full fine-tuning, the reward model's backbone with its score head applied at every
  position as the per-token value head (Secrets of RLHF: initialise the critic from the RM),
  or ``--value-model``; with rule rewards and neither, the policy's backbone with a new value
  head of zeros (as verl and OpenRLHF start the critic of a rule-reward run). With LoRA/QLoRA (``--critic-base policy``, the default) it is a
  second adapter on the policy's base plus a value head (see :class:`ActorCritic`), so one
  base serves actor, critic and reference; with ``--critic-base reward-model`` it is an
  adapter on the reward model, which is then the critic with its adapter disabled.

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


ACTOR, CRITIC = "default", "critic"  # adapter names on the shared base (single-base layout)


class ActorCritic(torch.nn.Module):
    """The trained part of a PPO run as one module, so that one DDP or DeepSpeed engine wraps
    it (accelerate prepares one model per engine under DeepSpeed).

    Two layouts:
    - *own critic* (full fine-tuning, ``--value-model``, or LoRA with ``--critic-base
      reward-model``): ``actor`` is a causal LM, ``critic`` a sequence classifier whose score
      head is applied at every position;
    - *shared base* (the LoRA/QLoRA default): ``actor`` is one peft model holding two adapters
      on the policy's frozen base, ``default`` (the actor) and ``critic``, and ``value_head``
      maps its hidden states to values; ``critic`` is None. With the adapters disabled the same
      base is the reference.

    In the shared layout the caller picks the adapter around each pass (:meth:`adapter`) and
    runs the backward pass inside the same block: gradient checkpointing recomputes a layer's
    forward during backward, with whichever adapter is active then.
    """

    def __init__(self, actor: Any, critic: Any = None, value_head: Any = None) -> None:
        super().__init__()
        self.actor = actor
        self.critic = critic
        self.value_head = value_head
        self.trainable = [p for p in self.parameters() if p.requires_grad]

    @property
    def shared(self) -> bool:
        return self.critic is None

    def actor_params(self) -> list[torch.nn.Parameter]:
        named = dict(self.named_parameters())
        if self.shared:
            return [p for n, p in named.items() if p.requires_grad and n.startswith("actor.")
                    and f".{CRITIC}." not in n]
        return [p for n, p in named.items() if p.requires_grad and n.startswith("actor.")]

    def critic_params(self) -> list[torch.nn.Parameter]:
        actor = {id(p) for p in self.actor_params()}
        return [p for p in self.trainable if id(p) not in actor]

    @contextmanager
    def adapter(self, name: str | None) -> Iterator[Any]:
        """Run the shared base with adapter ``name`` (None: adapters off, the reference).

        peft's ``set_adapter`` and ``disable_adapter`` also switch ``requires_grad`` of the
        adapters they deactivate; both adapters train, so their flags are restored after."""
        if not self.shared:
            yield self.actor
            return
        try:
            if name is None:
                with self.actor.disable_adapter():
                    yield self.actor
            else:
                self.actor.base_model.set_adapter(name)
                for p in self.trainable:  # the other adapter's gradients are still to come
                    p.requires_grad_(True)
                yield self.actor
        finally:
            if name is not None and name != ACTOR:
                self.actor.base_model.set_adapter(ACTOR)
            for p in self.trainable:
                p.requires_grad_(True)

    def policy_logits(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor,
                      T: int, temperature: float) -> Tensor:
        """Temperature-scaled logits that predict the last T tokens (the active adapter's
        policy: the actor, or the reference with adapters off).  Returns (B, T, V)."""
        out = self.actor(input_ids=input_ids, attention_mask=attention_mask,
                         position_ids=position_ids, use_cache=False, logits_to_keep=T + 1)
        return out.logits[:, :-1] / temperature

    def values(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor) -> Tensor:
        """V(s) at every position (shared layout: with the critic adapter active).
        Returns (B, L) float32."""
        if not self.shared:
            return token_scores(self.critic, input_ids, attention_mask, position_ids)
        hf = _hf_model(self.actor)
        hidden = getattr(hf, hf.base_model_prefix)(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            use_cache=False).last_hidden_state
        head_dtype = self.value_head.weight.dtype
        return self.value_head(hidden.to(head_dtype)).squeeze(-1).float()

    def forward(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor | None,
                *, T: int = 0, temperature: float | None = None, lm: bool = False) -> Tensor:
        """With ``temperature``: logits (B, T, V) of the last T tokens. With ``lm``: the
        logits (B, L, V) of every position (the PTX loss). Else: the critic's values (B, T)
        before each of the last T tokens. (One entry point, so that a DeepSpeed engine's
        forward sees every pass.)"""
        if lm:
            return self.actor(input_ids=input_ids, attention_mask=attention_mask,
                              use_cache=False).logits
        if temperature is not None:
            return self.policy_logits(input_ids, attention_mask, position_ids, T, temperature)
        P = input_ids.shape[1] - T
        return self.values(input_ids, attention_mask, position_ids)[:, P - 1:P - 1 + T]


@dataclass
class Roles:
    """The models of one PPO run and where they compute."""

    model: ActorCritic  # actor and critic (trainable), unwrapped
    ref: Any | None  # frozen causal LM; None: the policy's base with its adapters disabled
    reward: Any | None  # frozen sequence classifier; None: the critic with its adapter disabled
    tokenizer: Any
    device: torch.device
    offload_ref: bool = False
    offload_reward: bool = False
    has_reward_model: bool = True  # False: the rewards are rules only
    engine: Any = None  # the trainable module as prepared by accelerate (DDP / DeepSpeed)

    @property
    def actor(self) -> Any:
        return self.model.actor

    @property
    def critic(self) -> Any:
        return self.model.critic

    @contextmanager
    def reference(self) -> Iterator[Any]:
        """The reference policy, ready to call (adapter disabled or moved onto the device)."""
        if self.ref is None:
            if self.model.shared:
                with self.model.adapter(None) as ref:
                    yield ref
            else:
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


def zero_score_head(model: Any) -> None:
    """A critic started from the policy: its new score head at zeros, so that every value
    starts at 0 (no noise from a random head) and the critic learns the returns' scale."""
    with torch.no_grad():
        for p in _hf_model(model).score.parameters():
            p.zero_()


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
    import os

    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def _adapt(model: Any, cfg: RunConfig, task_type: str) -> Any:
    """Wrap ``model`` in a LoRA adapter (QLoRA: after preparing the 4-bit base)."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    if cfg.lora.qlora:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.train.gradient_checkpointing)
    return get_peft_model(model, lora_config(cfg.lora, task_type))


def value_head(actor: Any, reward: Any) -> torch.nn.Linear:
    """The shared layout's value head (float32): the reward model's score head when its
    hidden size matches the policy's (its scale and direction are a better start than
    noise), else zeros (every value starts at 0 and --critic-warmup-steps trains it)."""
    hidden = _hf_model(actor).config.hidden_size
    score = _hf_model(reward).score if reward is not None else None
    head = torch.nn.Linear(hidden, 1, bias=score is not None and score.bias is not None)
    head.to(torch.float32)
    with torch.no_grad():
        if score is not None and tuple(score.weight.shape) == (1, hidden):
            head.weight.copy_(score.weight.float())
            if head.bias is not None:
                head.bias.copy_(score.bias.float())
        else:
            head.weight.zero_()
            if head.bias is not None:
                head.bias.zero_()
    return head


def load_roles(cfg: RunConfig) -> Roles:
    """Load actor, reference, reward model and critic for ``cfg`` (see the module docstring)."""
    from align.ppo.plan import critic_base

    m, lora, t, a = cfg.model, cfg.lora, cfg.train, cfg.algo
    tokenizer = load_tokenizer(m.model, m)
    layout = critic_base(cfg)
    critic_path = a.value_model or m.reward_model or m.model  # no RM: from the policy
    for flag, path in (("--reward-model", m.reward_model), ("--value-model", a.value_model)):
        if path:
            _check_tokenizer(path, tokenizer, cfg, flag)
    q = lora.qlora
    actor = load_causal_lm(m.model, m, lora, t, quantize=q)
    ref = reward = critic = head = None
    if not lora.enabled or m.ref_model:
        ref = _freeze(load_causal_lm(m.ref_model or m.model, m, lora, t, quantize=q))
    if layout != "reward-model" and m.reward_model:  # the reward model: its own frozen copy
        reward = _freeze(load_sequence_classifier(m.reward_model, m, lora, t, quantize=q))
        load_value_head(reward, m.reward_model)
    if layout != "policy":
        critic = load_sequence_classifier(critic_path, m, lora, t, quantize=q)
        load_value_head(critic, critic_path)
        if critic_path == m.model:
            zero_score_head(critic)
    if lora.enabled:
        actor = _adapt(actor, cfg, "CAUSAL_LM")
        if layout == "policy":
            actor.add_adapter(CRITIC, lora_config(lora, "CAUSAL_LM"))
            head = value_head(actor, reward)
        else:
            critic = _adapt(critic, cfg, "SEQ_CLS")
    model = ActorCritic(actor, critic, head)
    if layout == "policy":  # add_adapter leaves the new adapter frozen until it is active
        for name, p in model.named_parameters():
            if f".{CRITIC}." in name or name.startswith("value_head."):
                p.requires_grad_(True)
        model.trainable = [p for p in model.parameters() if p.requires_grad]
    device = _device(cfg)
    disable_dropout(model)
    for frozen in (ref, reward):
        if frozen is not None:
            disable_dropout(frozen)
    if not q:
        model.to(device)
    elif head is not None:
        head.to(device)
    for frozen, offloaded in ((ref, a.offload_ref_model), (reward, a.offload_reward_model)):
        if frozen is not None and not q and not offloaded:
            frozen.to(device)
    if t.gradient_checkpointing:
        for net in (actor, critic):
            if net is not None:
                net.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs={"use_reentrant": False})
    return Roles(model=model, ref=ref, reward=reward, tokenizer=tokenizer, device=device,
                 offload_ref=a.offload_ref_model, offload_reward=a.offload_reward_model,
                 has_reward_model=bool(m.reward_model))


def trainable(model: Any) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def eos_token_ids(roles: Roles) -> list[int]:
    """Token ids that end a response: the tokenizer's EOS and the generation config's."""
    ids = {roles.tokenizer.eos_token_id}
    gen = getattr(_hf_model(roles.actor), "generation_config", None)
    extra = getattr(gen, "eos_token_id", None)
    ids.update(extra if isinstance(extra, (list, tuple)) else [extra])
    return sorted(i for i in ids if i is not None)
