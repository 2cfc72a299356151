"""PPO worked out before any model loads: checks, rollout plan, step counts, learning rates.

Shared by the registry (``AlgoSpec.check``), the dry run and the trainer's one-line
description, so that what a dry run prints is what a real run does. Nothing here imports torch.

Learning-rate defaults depend on the policy's size: OpenRLHF's 5e-7 (for 7B models) left a
135M model where it was, so the default is read from a table of size bands, each with its
source, after the model's parameter count from its ``config.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from align.config import LORA_LR_FACTOR
from align.errors import AlignError


@dataclass(frozen=True)
class LRBand:
    """Default learning rates (and, where measured, KL coefficient) for policies of at least
    ``min_params`` parameters."""

    min_params: float
    actor: float  # full fine-tuning
    critic: float
    source: str
    lora_actor: float | None = None  # LoRA/QLoRA; None: actor x LORA_LR_FACTOR
    kl_coef: float | None = None  # full fine-tuning; None: DEFAULT_KL_COEF (kl_coef())


# Largest band first. LoRA/QLoRA adapters use LORA_LR_FACTOR (align/config.py) times these.
LR_BANDS: tuple[LRBand, ...] = (
    LRBand(5e9, 5e-7, 9e-6, "OpenRLHF train_ppo_llama.sh (7B)"),
    LRBand(1e9, 3e-6, 9e-6, "TRL's PPO example on Pythia-1B (3e-6); critic as OpenRLHF"),
    LRBand(0, 3e-5, 2e-5, "SmolLM2-135M: full fine-tuning at 3e-5 with β 0.15 raised dev "
           "gold from the base model and from SFT (docs/ppo.md, H and I); LoRA's 1e-4 added "
           "0.13 gold to SFT (docs/real-model.md)", lora_actor=1e-4, kl_coef=0.15),
)
DEFAULT_KL_COEF = 0.05  # the ms-swift RLHF guide's β, for the bands without a measured one
UNKNOWN_SIZE_BAND = LR_BANDS[0]  # a hub id or a .gguf file: assume a 7B-class model


def model_params(path: str | None) -> int | None:
    """Parameters of the causal LM at ``path``, estimated from its config.json (embeddings +
    12·L·h² for the layers, the classic estimate); None when there is no local config."""
    if not path:
        return None
    config = Path(path).expanduser() / "config.json"
    if not config.is_file():
        return None
    try:
        c = json.loads(config.read_text(encoding="utf-8"))
        h, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    inter = c.get("intermediate_size") or 4 * h
    heads, kv = c.get("num_attention_heads") or 1, c.get("num_key_value_heads")
    kv_frac = (kv / heads) if kv else 1.0
    per_layer = (2 + 2 * kv_frac) * h * h + 3 * h * inter
    embeddings = vocab * h * (1 if c.get("tie_word_embeddings", True) else 2)
    return int(layers * per_layer + embeddings)


def lr_band(cfg: Any) -> tuple[LRBand, int | None]:
    """The size band of the policy (``--model``) and its estimated parameter count."""
    params = model_params(cfg.model.model)
    if params is None:
        return UNKNOWN_SIZE_BAND, None
    return next(b for b in LR_BANDS if params >= b.min_params), params


def default_lrs(cfg: Any) -> dict[str, float]:
    """PPO's default learning rates for ``cfg`` (the registry record's ``default_lrs_for``):
    the policy's size band, times LORA_LR_FACTOR with LoRA/QLoRA."""
    band, _ = lr_band(cfg)
    if not cfg.lora.enabled:
        return {"actor_lr": band.actor, "critic_lr": band.critic}
    actor = band.lora_actor if band.lora_actor is not None else band.actor * LORA_LR_FACTOR
    return {"actor_lr": actor, "critic_lr": band.critic * LORA_LR_FACTOR}


def kl_coef(cfg: Any) -> float:
    """The KL penalty's β: --kl-coef (or its preset's value) if set, else the size band's for
    full fine-tuning (0.15 below 1B: at 0.05 an SFT start drifted at the band's actor rate,
    docs/ppo.md E and I), else DEFAULT_KL_COEF (LoRA, the larger bands)."""
    if cfg.algo.kl_coef is not None:
        return cfg.algo.kl_coef
    band, _ = lr_band(cfg)
    return band.kl_coef if band.kl_coef is not None and not cfg.lora.enabled \
        else DEFAULT_KL_COEF


def learning_rates(cfg: Any) -> tuple[float, float]:
    """(actor, critic) learning rates: the resolved config's (align.options fills the unset
    ones from :func:`default_lrs`), else the flags and defaults here."""
    a, default = cfg.algo, default_lrs(cfg)
    actor = a.actor_lr or cfg.train.learning_rate or default["actor_lr"]
    return actor, a.critic_lr or default["critic_lr"]


def lr_source(cfg: Any) -> str:
    """Where the learning rates come from, for the plan line."""
    band, params = lr_band(cfg)
    filled = getattr(cfg, "lr_defaults", None)
    if filled is not None and "actor_lr" not in filled or \
            filled is None and (cfg.algo.actor_lr or cfg.train.learning_rate):
        given = "actor from the flags"
    else:
        size = f"{params / 1e9:.2g}B parameters" if params else "size unknown"
        given = f"{size}: {band.source}" + (", x10 for LoRA" if cfg.lora.enabled else "")
    return given


def total_steps(cfg: Any, num_prompts: int) -> int:
    """PPO steps of the run: --max-steps, else --num-train-epochs passes over the prompts."""
    if cfg.train.max_steps > 0:
        return cfg.train.max_steps
    return max(1, math.ceil(cfg.train.num_train_epochs * num_prompts / cfg.algo.rollout_batch_size))


def lr_factor(kind: str, update: int, warmup: int, total: int) -> float:
    """The LR multiplier after ``update`` optimizer updates, as transformers' schedules of the
    same names compute it (linear / cosine decay to 0, constant, constant with warm-up)."""
    if kind == "constant":  # no warm-up, as in transformers
        return 1.0
    if update < warmup:
        return update / max(1, warmup)
    if kind == "constant_with_warmup":
        return 1.0
    progress = (update - warmup) / max(1, total - warmup)
    if kind == "linear":
        return max(0.0, 1.0 - progress)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


@dataclass(frozen=True)
class Batches:
    """The batch arithmetic of one PPO step over ``world`` processes."""

    rollout: int  # prompts per PPO step, over all processes
    world: int
    mini_batches: int  # optimizer steps per epoch
    micro: int  # sequences per forward/backward pass on one process

    @property
    def per_process(self) -> int:
        return self.rollout // self.world

    @property
    def mini(self) -> int:
        """Sequences per optimizer step, over all processes."""
        return self.rollout // self.mini_batches

    @property
    def mini_per_process(self) -> int:
        return self.per_process // self.mini_batches

    @property
    def micro_per_mini(self) -> int:
        """Forward/backward passes per optimizer step on one process."""
        return math.ceil(self.mini_per_process / self.micro)


def batches(cfg: Any, world: int = 1) -> Batches:
    a = cfg.algo
    return Batches(a.rollout_batch_size, world, a.num_mini_batches,
                   cfg.train.per_device_train_batch_size)


def deepspeed_config(cfg: Any, world: int, hidden_size: int) -> dict[str, Any]:
    """The --deepspeed JSON with its "auto" values filled from align's flags (as the HF
    Trainer fills them for the TRL-backed algorithms): micro-batch, accumulation, clipping,
    precision and the bucket sizes that depend on the model's hidden size."""
    from align.plan import deepspeed_config as read

    c = json.loads(json.dumps(read(cfg.train.deepspeed)))
    t, b = cfg.train, batches(cfg, world)
    fill = {"train_micro_batch_size_per_gpu": b.micro,
            "gradient_accumulation_steps": b.micro_per_mini,
            "train_batch_size": b.micro * b.micro_per_mini * world,
            "gradient_clipping": t.max_grad_norm}
    for key, value in fill.items():
        if c.get(key, "auto") == "auto":
            c[key] = value
    for key, value in (("bf16", t.bf16), ("fp16", False)):
        section = c.setdefault(key, {})
        if section.get("enabled", "auto") == "auto":
            section["enabled"] = value
    zero = c.setdefault("zero_optimization", {})
    for key, value in (("reduce_bucket_size", hidden_size * hidden_size),
                       ("stage3_prefetch_bucket_size", int(0.9 * hidden_size * hidden_size)),
                       ("stage3_param_persistence_threshold", 10 * hidden_size)):
        if zero.get(key) == "auto":
            zero[key] = value
    # align's AdamW (actor and critic groups) runs inside the engine
    c.setdefault("zero_allow_untested_optimizer", True)
    c.setdefault("zero_force_ds_cpu_optimizer", False)
    left = [k for k, v in _flat(c) if v == "auto"]
    if left:
        raise AlignError(f"--deepspeed {cfg.train.deepspeed}: align's PPO cannot fill "
                         f"{', '.join(left)} (\"auto\"); give them a value in the JSON")
    return c


def _flat(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        out += _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [(prefix + k, v)]
    return out


def check_supported(cfg: Any, world: int = 1) -> None:
    """Refuse flag combinations this engine would get silently wrong."""
    t, a, lo = cfg.train, cfg.algo, cfg.lora
    if a.rollout_batch_size % (world * a.num_mini_batches):
        raise AlignError(f"--rollout-batch-size {a.rollout_batch_size} must be divisible by the "
                         f"{world} processes x --num-mini-batches {a.num_mini_batches}: every "
                         "process samples an equal share and takes the same optimizer steps")
    if t.use_liger_kernel:
        raise AlignError("--use-liger-kernel applies to the TRL-backed algorithms; align's PPO "
                         "engine does not patch its models with Liger kernels")
    if t.fp16:
        raise AlignError("--fp16 is not supported by --algo ppo (no loss scaling); use --bf16")
    if t.gradient_accumulation_steps != 1:
        raise AlignError("--gradient-accumulation-steps is not used by --algo ppo: each "
                         "optimizer step takes one mini-batch (--rollout-batch-size / "
                         "--num-mini-batches), accumulated over micro-batches of "
                         "--per-device-train-batch-size")
    if t.optim not in (None, "adamw_torch"):
        raise AlignError(f"--optim {t.optim}: align's PPO engine trains actor and critic with "
                         "torch's AdamW (--optim adamw_torch); the other optimizers apply to "
                         "the TRL-backed algorithms")
    if t.eval_strategy == "epoch" or t.eval_steps is not None:
        raise AlignError("--eval-strategy epoch / --eval-steps: PPO evaluates its held-out "
                         "prompts at the start, at every --save-steps and at the end")
    if t.learning_rate is not None and a.actor_lr is not None:
        raise AlignError("give --actor-lr or --learning-rate (its alias for PPO), not both")
    if lo.enabled and a.offload_ref_model and not cfg.model.ref_model:
        raise AlignError("--offload-ref-model: with LoRA the reference is the policy's base with "
                         "its adapters disabled, so there is no separate copy to offload")
    if lo.enabled and a.offload_reward_model and critic_base(cfg) == "reward-model":
        raise AlignError("--offload-reward-model: with --critic-base reward-model the reward "
                         "model is the critic with its adapter disabled, so there is no separate "
                         "copy to offload (the default --critic-base policy keeps it separate)")
    if a.value_model and lo.enabled and a.critic_base == "policy":
        raise AlignError("--value-model gives the critic its own model; --critic-base policy "
                         "puts it on the policy's base: choose one")
    if t.deepspeed and a.critic_warmup_steps:
        raise AlignError("--critic-warmup-steps with --deepspeed: the engine steps the actor's "
                         "AdamW with zero gradients while only the critic trains, so the "
                         "actor's first updates after the warm-up come out smaller than "
                         "without DeepSpeed (Adam's bias correction counts those steps); "
                         "leave --critic-warmup-steps 0 under --deepspeed")
    if t.deepspeed and a.offload_reward_model | a.offload_ref_model:
        raise AlignError("--offload-reward-model/--offload-ref-model move whole models between "
                         "CPU and GPU, which DeepSpeed does not allow for models it manages; use "
                         "ZeRO-3 (it shards the frozen models too) or the JSON's offload_param")
    check_reward_model_flags(cfg)
    from align.plan import deepspeed_config as read

    agents = getattr(cfg, "agents", None)
    if t.deepspeed and world > 1 and agents is not None and agents.enabled and \
            read(t.deepspeed).get("zero_optimization", {}).get("stage") == 3:
        # ZeRO-3 gathers the weights' shards from every process at every forward pass, so all
        # processes must make the same passes; each samples its own episodes, which take their
        # own number of turns and generate calls, and would wait on each other for ever
        raise AlignError("--tools/--environment with ZeRO-3 over several processes: each "
                         "process's episodes take their own number of turns, while ZeRO-3 "
                         "needs every process in every forward pass; use ZeRO-2 "
                         "(recipes/deepspeed/zero2.json) or one process")
    if cfg.data.max_length and cfg.data.max_length <= a.max_new_tokens:
        raise AlignError(f"--max-length {cfg.data.max_length} leaves no room for a prompt "
                         f"before --max-new-tokens {a.max_new_tokens}")


def check_reward_model_flags(cfg: Any) -> None:
    """The flags that act on a reward model, refused when rewards are rules only."""
    if cfg.model.reward_model:
        return
    a = cfg.algo
    for flag, on in (("--reward-at-turn-end", a.reward_at_turn_end),
                     ("--offload-reward-model", a.offload_reward_model),
                     ("--critic-base reward-model", a.critic_base == "reward-model")):
        if on:
            raise AlignError(f"{flag} acts on the reward model, and there is none: give "
                             "--reward-model DIR, or leave it out with rule rewards")


def critic_base(cfg: Any) -> str:
    """Where the critic lives: 'policy' (an adapter on the policy's base, the LoRA default),
    'reward-model' (an adapter on the reward model's base) or 'own' (a full model: full
    fine-tuning, or --value-model)."""
    a = cfg.algo
    if not cfg.lora.enabled or a.value_model:
        return "own"
    return a.critic_base or "policy"


def rollout_plan(a: Any, world: int = 1) -> str:
    """How rollouts are generated and scored, in one plan line."""
    share = a.rollout_batch_size // world
    gen = min(a.rollout_generate_batch_size or a.local_rollout_forward_batch_size, share)
    calls = math.ceil(share / gen)
    how = [f"{calls} generate call{'s' if calls > 1 else ''} of up to {gen} prompts"]
    if calls > 1 and a.sort_by_length:
        how.append("prompts sorted by length")
    if a.compile_rollout:
        how.append("static KV cache + torch.compile")
    each = f" per process ({share} prompts each)" if world > 1 else ""
    return (f"rollouts: {', '.join(how)}{each} (transformers generate); scoring passes of "
            f"{a.local_rollout_forward_batch_size} sequences")


def describe(cfg: Any, num_prompts: int, world: int = 1) -> str:
    """The batch arithmetic of a run in one line (what a "step" means here)."""
    a, b = cfg.algo, batches(cfg, world)
    actor_lr, critic_lr = learning_rates(cfg)
    procs = f" over {world} processes ({b.per_process} each)" if world > 1 else ""
    return (f"ppo: {total_steps(cfg, num_prompts)} steps of {a.rollout_batch_size} prompts"
            f"{procs} ({num_prompts} in the data); each step {a.ppo_epochs} epochs x "
            f"{a.num_mini_batches} mini-batches of {b.mini} (micro-batches of {b.micro}); "
            f"actor lr {actor_lr:g}, critic lr {critic_lr:g} ({lr_source(cfg)}); KL β "
            f"{kl_coef(cfg):g}")


def roles(cfg: Any) -> dict[str, str]:
    """Which model plays which role, and how it is held (for the printed plan)."""
    a, m = cfg.algo, cfg.model
    where = critic_base(cfg)
    out = {}
    if where == "policy":
        out["critic"] = (f"a LoRA adapter on the policy's base ({m.model}) with a value head "
                         f"({value_head_start(cfg)})")
        out["reward model"] = f"{m.reward_model} (frozen, its own copy" + \
            (", kept on CPU between scoring passes)" if a.offload_reward_model else ")")
        if not m.reward_model:
            del out["reward model"]
    elif where == "reward-model":
        out["critic"] = (f"a LoRA adapter on {m.reward_model}; its score head becomes the "
                         "per-token value head (trainable)")
        out["reward model"] = f"{m.reward_model}: the critic's base with its adapter disabled " \
            "(one copy serves both)"
    elif a.value_model or m.reward_model:
        critic = a.value_model or m.reward_model
        kind = "a LoRA adapter on" if cfg.lora.enabled else "a trainable copy of"
        out["critic"] = f"{kind} {critic}; its score head becomes the per-token value head"
    else:
        out["critic"] = (f"a trainable copy of the policy ({m.model}) with a new value head "
                         "(zeros; no reward model to start from, as verl and OpenRLHF start "
                         "the critic of rule rewards)")
    return out


def value_head_start(cfg: Any) -> str:
    if not cfg.model.reward_model:
        return "zeros: no reward model to start from; --critic-warmup-steps trains it first"
    return ("the reward model's score head when its hidden size matches the policy's, else "
            "zeros; --critic-warmup-steps trains it before the actor moves")


def reward_plan(cfg: Any, data: Any, report: Any = None) -> tuple[Any, float | None]:
    """The reward sources and weights (align.rewards.sources.RewardPlan), checked before any
    model loads, as GRPO checks them; with ``report``, the plan line and the data's notes.

    With ``--environment`` its ``get_reward()`` may be one more source, the last one: its
    weight is a last extra value of ``--reward-weights`` (default 1), and it may be the only
    source (whether the class has ``get_reward`` is known once its file is imported, when the
    run starts). Returns the plan and the environment's weight (None without an environment).
    """
    import dataclasses

    from align.config import parse_list
    from align.rewards.sources import RewardPlan, checked_plan

    a = cfg.algo
    agents = getattr(cfg, "agents", None)
    env_weight = None
    if agents is not None and agents.environment:
        n = bool(cfg.model.reward_model) + len(parse_list(a.reward_funcs)) + bool(a.reward_fn)
        weights = parse_list(a.reward_weights)
        env_weight = 1.0
        if weights and len(weights) == n + 1:
            env_weight = float(weights[-1])
            a = dataclasses.replace(a, reward_weights=",".join(weights[:-1]) or None)
        if n == 0:
            plan, notes = RewardPlan(), []
            if report is not None:
                report.plan(f"rewards: the environment's get_reward x{env_weight:g}")
            return plan, env_weight
    plan, notes = checked_plan(a, cfg.model.reward_model, data.rows)
    if report is not None:
        env = f", the environment's get_reward x{env_weight:g} (if it has one)" \
            if env_weight is not None else ""
        report.plan(f"rewards: {plan.describe()}{env}")
        for note in notes:
            report.note(f"note: {note}")
    return plan, env_weight


def check_agents(cfg: Any, data: Any, report: Any) -> None:
    """Multi-turn rollouts (--tools / --environment): the files exist (nothing imported), the
    prompts are chats, and the flags that only make sense for one turn are refused."""
    agents = getattr(cfg, "agents", None)
    if agents is None or not agents.enabled:
        return
    from align.agents.tools import check_files

    check_files(agents)
    if data.rows and not isinstance(data.rows[0]["prompt"], list):
        raise AlignError("--tools/--environment roll out chats (the tool turns go through the "
                         "chat template): give prompts as lists of messages")
    if cfg.algo.reward_at_turn_end:
        raise AlignError("--reward-at-turn-end closes a single-turn response for the reward "
                         "model; with --tools/--environment the episode already ends with the "
                         "model's own turn: leave it out")
    report.plan(f"multi-turn rollouts: up to {agents.max_tool_calls} tool calls per episode "
                f"(--max-tool-calls), {agents.tool_timeout:g} s per call (--tool-timeout); "
                f"--max-new-tokens {cfg.algo.max_new_tokens} counts the episode's sampled and "
                "tool tokens together; only the sampled ones are trained")


def check(cfg: Any, data: Any, report: Any) -> None:
    """PPO's pre-training checks (``AlgoSpec.check``), for dry runs and real runs alike:
    the refused flag combinations, the critic's and the PTX data's paths, and the plan."""
    from align.data import load_valid
    from align.models import check_model_path
    from align.plan import world_size

    world = world_size()
    check_supported(cfg, world)
    a = cfg.algo
    check_model_path("--value-model", a.value_model)
    check_agents(cfg, data, report)
    reward_plan(cfg, data, report)
    for role, text in roles(cfg).items():
        report.role(role, text)
    for role, offloaded in (("reference", a.offload_ref_model),
                            ("reward model", a.offload_reward_model)):
        if offloaded:
            report.plan(f"offload: the {role} stays on CPU and moves to the GPU only for its "
                        "forward pass")
    report.plan(rollout_plan(a, world))
    if a.compile_rollout:
        from align.plan import cuda_available

        if not cuda_available():
            report.machine_issue("--compile-rollout needs a CUDA GPU (torch.compile replays the "
                                 "decoding step as a CUDA graph); drop it on this machine")
    if a.ptx_dataset:
        ptx = load_valid(a.ptx_dataset, "sft")
        report.plan(f"ptx data: {ptx.summary()} (loss weight {a.ptx_coef:g})")
    report.plan(describe(cfg, len(data.rows), world))
