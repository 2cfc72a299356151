"""Setting up one PPO run: supported flags, learning rates, optimizers, and its resumable state.

:class:`PPORun` wires the roles, optimizers, data and monitors of one run together and owns the
one ``state_dict()`` that exact resume needs (everything except the model weights, which
``checkpoint.py`` saves with ``save_pretrained``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from align.config import RunConfig
from align.errors import AlignError

def check_supported(cfg: RunConfig) -> None:
    """Refuse flag combinations this engine would get silently wrong."""
    import os

    t, a = cfg.train, cfg.algo
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise AlignError("PPO runs in one process (one GPU, or CPU); it does not shard rollouts "
                         "or gradients across processes yet. Launch it without accelerate/"
                         "torchrun, and use --lora/--qlora, --gradient-checkpointing and "
                         "--offload-* to fit large models")
    if t.deepspeed:
        raise AlignError("--deepspeed is not supported by --algo ppo (single process only)")
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
    if cfg.lora.enabled and a.offload_ref_model and not cfg.model.ref_model:
        raise AlignError("--offload-ref-model: with LoRA the reference is the actor with its "
                         "adapter disabled, so there is no separate copy to offload")
    if cfg.lora.enabled and a.offload_reward_model and not a.value_model:
        raise AlignError("--offload-reward-model: with LoRA the reward model is the critic "
                         "with its adapter disabled, so there is no separate copy to offload")
    if cfg.data.max_length and cfg.data.max_length <= a.max_new_tokens:
        raise AlignError(f"--max-length {cfg.data.max_length} leaves no room for a prompt "
                         f"before --max-new-tokens {a.max_new_tokens}")


def check(cfg: RunConfig, data: Any, report: Any) -> None:
    """PPO's pre-training checks (``AlgoSpec.check``), for dry runs and real runs alike:
    the refused flag combinations, the critic's and the PTX data's paths, and the plan."""
    from align.data import load_valid
    from align.models import check_model_path

    check_supported(cfg)
    a, lo = cfg.algo, cfg.lora
    check_model_path("--value-model", a.value_model)
    critic = a.value_model or cfg.model.reward_model
    if lo.enabled:
        report.role("critic", f"a LoRA adapter on {critic}; its score head becomes the "
                    "per-token value head (trainable)")
        if not a.value_model:
            report.role("reward model", f"{cfg.model.reward_model}: the critic's base with its "
                        "adapter disabled (one copy serves both)")
    else:
        report.role("critic", f"a trainable copy of {critic}; its score head becomes the "
                    "per-token value head")
    for role, offloaded in (("reference", a.offload_ref_model),
                            ("reward model", a.offload_reward_model)):
        if offloaded:
            report.plan(f"offload: the {role} stays on CPU and moves to the GPU only for its "
                        "forward pass")
    report.plan(rollout_plan(a))
    if a.compile_rollout:
        from align.plan import cuda_available

        if not cuda_available():
            report.machine_issue("--compile-rollout needs a CUDA GPU (torch.compile replays the "
                                 "decoding step as a CUDA graph); drop it on this machine")
    if a.ptx_dataset:
        ptx = load_valid(a.ptx_dataset, "sft")
        report.plan(f"ptx data: {ptx.summary()} (loss weight {a.ptx_coef:g})")
    actor_lr, critic_lr = learning_rates(cfg)
    steps = total_steps(cfg, len(data.rows))
    report.plan(f"ppo: {steps} steps of {a.rollout_batch_size} prompts ({len(data.rows)} in the "
                f"data); each step {a.ppo_epochs} epochs x {a.num_mini_batches} mini-batches of "
                f"{a.rollout_batch_size // a.num_mini_batches} (micro-batches of "
                f"{cfg.train.per_device_train_batch_size}); actor lr {actor_lr:g}, critic lr "
                f"{critic_lr:g}")


def rollout_plan(a: Any) -> str:
    """How rollouts are generated and scored, in one plan line."""
    gen = min(a.rollout_generate_batch_size or a.local_rollout_forward_batch_size,
              a.rollout_batch_size)
    calls = math.ceil(a.rollout_batch_size / gen)
    how = [f"{calls} generate call{'s' if calls > 1 else ''} of up to {gen} prompts"]
    if calls > 1 and a.sort_by_length:
        how.append("prompts sorted by length")
    if a.compile_rollout:
        how.append("static KV cache + torch.compile")
    return (f"rollouts: {', '.join(how)} (transformers generate); scoring passes of "
            f"{a.local_rollout_forward_batch_size} sequences")


def learning_rates(cfg: RunConfig) -> tuple[float, float]:
    """(actor, critic) learning rates of the resolved config: the flags, else the defaults of
    PPO's registry record for the training mode (align.options.fill_learning_rates)."""
    return cfg.algo.actor_lr, cfg.algo.critic_lr


def total_steps(cfg: RunConfig, num_prompts: int) -> int:
    if cfg.train.max_steps > 0:
        return cfg.train.max_steps
    return max(1, math.ceil(cfg.train.num_train_epochs * num_prompts / cfg.algo.rollout_batch_size))


@dataclass
class Optim:
    """Both optimizers (AdamW) and their LR schedules."""

    actor: Any
    critic: Any
    actor_scheduler: Any
    critic_scheduler: Any


def build_optim(cfg: RunConfig, roles: Any, steps: int) -> Optim:
    import torch
    from transformers import get_scheduler

    from align.ppo.models import trainable

    a, t = cfg.algo, cfg.train
    per_step = a.ppo_epochs * a.num_mini_batches
    actor_lr, critic_lr = learning_rates(cfg)
    actor_opt = torch.optim.AdamW(trainable(roles.actor), lr=actor_lr, weight_decay=t.weight_decay)
    critic_opt = torch.optim.AdamW(trainable(roles.critic), lr=critic_lr,
                                   weight_decay=t.weight_decay)

    def schedule(opt: Any, n: int) -> Any:
        n = max(n, 1)
        warmup = t.warmup_steps if t.warmup_steps is not None else math.ceil(t.warmup_ratio * n)
        return get_scheduler(t.lr_scheduler_type, opt, num_warmup_steps=warmup,
                             num_training_steps=n)

    return Optim(actor_opt, critic_opt,
                 schedule(actor_opt, max(steps - a.critic_warmup_steps, 0) * per_step),
                 schedule(critic_opt, steps * per_step))


def scale_lr(optimizer: Any, scheduler: Any, factor: float) -> None:
    """Multiply a schedule's base and current learning rates by ``factor`` (rollback)."""
    scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]
    for group in optimizer.param_groups:
        group["lr"] *= factor
        if "initial_lr" in group:
            group["initial_lr"] *= factor


@dataclass
class PPORun:
    """Everything one PPO run works with; the mutable part round-trips through state_dict()."""

    cfg: RunConfig
    roles: Any  # align.ppo.models.Roles
    optim: Optim
    prompts: list[list[int]]  # token ids of the training prompts
    eval_prompts: list[list[int]] | None
    ptx: list[list[int]] | None  # token ids of the PTX records
    sampler: Any  # align.ppo.data.Sampler over prompts
    ptx_sampler: Any | None
    kl_ctl: Any  # align.ppo.kl_control.KLController
    reward_stats: Any  # align.ppo.reward_norm.RunningMoments
    monitor: Any  # align.health.HealthMonitor
    out: Path
    total_steps: int
    prompt_limit: int | None = None  # longest prompt in tokens (longer ones keep their end)
    step: int = 0
    lr_scale: float = 1.0  # product of the rollback LR factors applied so far
    healthy_step: int | None = None  # newest checkpoint saved with no detector streak running
    eval_before: dict[str, float] = field(default_factory=dict)
    latest_eval: tuple[int, dict[str, float]] | None = None  # not state: eval is deterministic

    @property
    def a(self) -> Any:
        return self.cfg.algo

    @classmethod
    def create(cls, cfg: RunConfig, data: Any, eval_data: Any) -> "PPORun":
        from align.data import load_valid
        from align.health import HealthMonitor
        from align.ppo.data import Sampler, prompt_ids, ptx_ids
        from align.ppo.kl_control import KLController
        from align.ppo.models import load_roles
        from align.ppo.reward_norm import RunningMoments

        a, t = cfg.algo, cfg.train
        roles = load_roles(cfg)
        limit = cfg.data.max_prompt_length
        if cfg.data.max_length:
            limit = min(limit or cfg.data.max_length, cfg.data.max_length - a.max_new_tokens)
        prompts = prompt_ids(data.rows, roles.tokenizer, limit)
        evals = prompt_ids(eval_data.rows, roles.tokenizer, limit) if eval_data else None
        ptx = ptx_sampler = None
        if a.ptx_dataset:
            rows = load_valid(a.ptx_dataset, "sft").rows
            ptx = ptx_ids(rows, roles.tokenizer, cfg.data.max_length)
            ptx_sampler = Sampler(len(ptx), t.per_device_train_batch_size, t.seed + 1)
        steps = total_steps(cfg, len(prompts))
        return cls(cfg=cfg, roles=roles, optim=build_optim(cfg, roles, steps), prompts=prompts,
                   eval_prompts=evals, ptx=ptx,
                   sampler=Sampler(len(prompts), a.rollout_batch_size, t.seed),
                   ptx_sampler=ptx_sampler,
                   kl_ctl=KLController(a.kl_coef, a.target_kl, a.kl_horizon),
                   reward_stats=RunningMoments(), monitor=HealthMonitor(cfg.health, "ppo"),
                   out=Path(t.output_dir), total_steps=steps, prompt_limit=limit)

    # --- exact resume -------------------------------------------------------------------------
    def state_dict(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(JSON-able state, tensor state): all but the weights, enough to continue exactly."""
        from align.ppo.checkpoint import rng_state

        rng_plain, rng_tensors = rng_state()
        plain = {
            "step": self.step, "sampler": self.sampler.state_dict(),
            "ptx_sampler": self.ptx_sampler.state_dict() if self.ptx_sampler else None,
            "kl_ctl": self.kl_ctl.state_dict(), "reward_stats": self.reward_stats.state_dict(),
            "health": self.monitor.state_dict(), "lr_scale": self.lr_scale,
            "healthy_step": self.healthy_step, "eval_before": self.eval_before, "rng": rng_plain,
        }
        o = self.optim
        tensors = {"actor_opt": o.actor.state_dict(), "critic_opt": o.critic.state_dict(),
                   "actor_sched": o.actor_scheduler.state_dict(),
                   "critic_sched": o.critic_scheduler.state_dict(), "rng": rng_tensors}
        return plain, tensors

    def load_state_dict(self, plain: dict[str, Any], tensors: dict[str, Any]) -> None:
        from align.ppo.checkpoint import set_rng_state

        self.step = int(plain["step"])
        self.sampler.load_state_dict(plain["sampler"])
        if self.ptx_sampler and plain["ptx_sampler"]:
            self.ptx_sampler.load_state_dict(plain["ptx_sampler"])
        self.kl_ctl.load_state_dict(plain["kl_ctl"])
        self.reward_stats.load_state_dict(plain["reward_stats"])
        self.monitor.load_state_dict(plain["health"])
        self.lr_scale = float(plain["lr_scale"])
        self.healthy_step = plain["healthy_step"]
        self.eval_before = dict(plain["eval_before"])
        o = self.optim
        o.actor.load_state_dict(tensors["actor_opt"])
        o.critic.load_state_dict(tensors["critic_opt"])
        o.actor_scheduler.load_state_dict(tensors["actor_sched"])
        o.critic_scheduler.load_state_dict(tensors["critic_sched"])
        set_rng_state(plain["rng"], tensors["rng"])

    def save(self, healthy: bool) -> Path:
        """Save checkpoint-<step> atomically; rotate old ones but keep the last healthy one."""
        from align.checkpoints import rotate, run_record
        from align.ppo.checkpoint import save_checkpoint

        if healthy:
            self.healthy_step = self.step
        plain, tensors = self.state_dict()
        path = save_checkpoint(self.out, self.step, self.roles, plain, tensors,
                               run_record(self.cfg), healthy)
        rotate(self.out, self.cfg.train.save_total_limit)
        return path

    def restore(self, step: int) -> None:
        """Load checkpoint-<step>: weights, optimizers, schedules, RNG and all counters."""
        from align.ppo.checkpoint import load_checkpoint

        plain, tensors = load_checkpoint(self.out / f"checkpoint-{step}", self.roles)
        self.load_state_dict(plain, tensors)
