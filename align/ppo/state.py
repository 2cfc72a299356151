"""Setting up one PPO run: its optimizer and LR schedules, and its resumable state.

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
from align.ppo.plan import kl_coef, learning_rates, lr_factor, total_steps


@dataclass
class Optim:
    """One AdamW over actor and critic (param groups 0 and 1, each with its own learning rate)
    and one LR schedule with a factor per group; one optimizer, so that one DeepSpeed engine
    can hold it."""

    optimizer: Any
    scheduler: Any  # LambdaLR: the actor's and the critic's factor per update

    def step(self) -> None:
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    @property
    def lrs(self) -> tuple[float, float]:
        groups = self.optimizer.param_groups
        return groups[0]["lr"], groups[1]["lr"]


def build_optim(cfg: RunConfig, model: Any, steps: int) -> Optim:
    """AdamW with the actor and critic learning rates, and their schedules: the critic's over
    every update, the actor's over the updates after --critic-warmup-steps (0 before)."""
    import torch
    from torch.optim.lr_scheduler import LambdaLR

    a, t = cfg.algo, cfg.train
    per_step = a.ppo_epochs * a.num_mini_batches
    actor_lr, critic_lr = learning_rates(cfg)
    groups = [{"params": model.actor_params(), "lr": actor_lr},
              {"params": model.critic_params(), "lr": critic_lr}]
    optimizer = torch.optim.AdamW(groups, lr=critic_lr, weight_decay=t.weight_decay)
    kind, ratio = t.lr_scheduler_type, t.warmup_ratio
    critic_total = max(steps * per_step, 1)

    def warmup(n: int) -> int:  # --warmup-steps (optimizer updates), else --warmup-ratio
        return t.warmup_steps if t.warmup_steps is not None else math.ceil(ratio * n)

    held = a.critic_warmup_steps * per_step  # updates before the actor moves
    actor_total = max((steps - a.critic_warmup_steps) * per_step, 1)

    def critic_factor(u: int) -> float:
        return lr_factor(kind, u, warmup(critic_total), critic_total)

    def actor_factor(u: int) -> float:
        if u < held:
            return 0.0
        return lr_factor(kind, u - held, warmup(actor_total), actor_total)

    return Optim(optimizer, LambdaLR(optimizer, [actor_factor, critic_factor]))


def scale_lr(optim: Optim, factor: float) -> None:
    """Multiply the actor's base and current learning rate by ``factor`` (rollback)."""
    optim.scheduler.base_lrs[0] *= factor
    group = optim.optimizer.param_groups[0]
    group["lr"] *= factor
    if "initial_lr" in group:
        group["initial_lr"] *= factor


def deepspeed_roles(cfg: RunConfig, dist: Any, roles: Any, optim: Optim) -> None:
    """Under --deepspeed: the trainable module and the optimizer into one engine (its JSON's
    "auto" values filled from the flags); under ZeRO-3 the separate frozen models (reference,
    reward model) are sharded too."""
    from align.ppo.models import _hf_model
    from align.ppo.plan import deepspeed_config

    hidden = _hf_model(roles.actor).config.hidden_size
    dist.ds_config = deepspeed_config(cfg, dist.world, hidden)
    roles.engine = dist.deepspeed(roles.model, optim.optimizer)
    if dist.zero3:
        if roles.ref is not None:
            roles.ref = dist.shard_frozen(roles.ref)
        if roles.reward is not None:
            roles.reward = dist.shard_frozen(roles.reward)


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
    turn_end: list[int] | None = None  # tokens that close a response for the reward model
    rows: Any = None  # the training records (prompt and the columns rule rewards read)
    eval_rows: Any = None  # the held-out records
    scorer: Any = None  # align.ppo.rewards.Scorer: the reward sources and weights
    toolset: Any = None  # align.agents.tools.Toolset: multi-turn rollouts with tools; or None
    step: int = 0
    lr_scale: float = 1.0  # product of the rollback LR factors applied so far
    eval_before: dict[str, float] = field(default_factory=dict)
    latest_eval: tuple[int, dict[str, float]] | None = None  # (step, eval metrics), newest
    dist: Any = None  # align.ppo.dist.Dist: this process's place in the launch
    keep_answers: int = 0  # answers the next step keeps for samples.jsonl (0: none)
    answers: list[dict[str, Any]] = field(default_factory=list)  # the last step's kept

    @property
    def a(self) -> Any:
        return self.cfg.algo

    @property
    def eos_penalty(self) -> float:
        """The score taken from responses cut without EOS (--missing-eos-penalty, whose
        default depends on whether a reward model reads the reward at the turn end: rule
        rewards see the cut text themselves, and their scale is not the reward model's)."""
        from align.ppo.data import missing_eos_penalty

        return missing_eos_penalty(self.a.missing_eos_penalty, self.turn_end is not None)

    @classmethod
    def create(cls, cfg: RunConfig, data: Any, eval_data: Any, dist: Any = None) -> "PPORun":
        from align.data import load_valid
        from align.health import HealthMonitor
        from align.ppo.data import (Sampler, prompt_ids, ptx_ids, reward_at_turn_end,
                                    turn_end_ids)
        from align.ppo.dist import Dist
        from align.ppo.kl_control import KLController
        from align.ppo.models import load_roles
        from align.ppo.reward_norm import RunningMoments
        from align.agents.tools import load_toolset
        from align.ppo.rewards import load_scorer

        a, t = cfg.algo, cfg.train
        dist = dist or Dist(deepspeed=bool(t.deepspeed))
        # user code (--tools, --environment, --reward-fn) is imported here, before the models
        toolset = load_toolset(cfg.agents) if getattr(cfg, "agents", None) else None
        if toolset is not None:  # a template that cannot carry tool calls: exit 2, no model
            from align.agents.parsing import require_tool_template
            from align.models import load_tokenizer

            require_tool_template(load_tokenizer(cfg.model.model, cfg.model), cfg.model.model)
        scorer = load_scorer(cfg, data, toolset)
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
            # each process draws its own PTX records
            ptx_sampler = Sampler(len(ptx), t.per_device_train_batch_size,
                                  t.seed + 1 + 7919 * dist.rank)
        chat = data.form == "conversational"
        # only a reward model reads a closed turn: rule rewards see the text as sampled
        turn_end = turn_end_ids(roles.tokenizer, chat) if roles.has_reward_model and \
            reward_at_turn_end(a.reward_at_turn_end, chat, roles.tokenizer) else None
        steps = total_steps(cfg, len(prompts))
        optim = build_optim(cfg, roles.model, steps)
        if t.deepspeed:
            deepspeed_roles(cfg, dist, roles, optim)
        return cls(cfg=cfg, roles=roles, optim=optim, prompts=prompts, eval_prompts=evals, ptx=ptx,
                   sampler=Sampler(len(prompts), a.rollout_batch_size, t.seed),
                   ptx_sampler=ptx_sampler,
                   kl_ctl=KLController(kl_coef(cfg), a.target_kl, a.kl_horizon),
                   reward_stats=RunningMoments(), monitor=HealthMonitor(cfg.health, "ppo"),
                   out=Path(t.output_dir), total_steps=steps, prompt_limit=limit,
                   turn_end=turn_end, rows=data.rows,
                   eval_rows=eval_data.rows if eval_data else None, scorer=scorer,
                   toolset=toolset, dist=dist)

    # --- exact resume -------------------------------------------------------------------------
    def state_dict(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(JSON-able state, tensor state, this process's state): all but the weights, enough
        to continue exactly. The first two are the same on every process (rank 0 saves them);
        the third holds this process's RNG streams and PTX position."""
        from align.ppo.checkpoint import rng_state

        plain = {
            "step": self.step, "world": self.dist.world, "sampler": self.sampler.state_dict(),
            "kl_ctl": self.kl_ctl.state_dict(), "reward_stats": self.reward_stats.state_dict(),
            "health": self.monitor.state_dict(), "lr_scale": self.lr_scale,
            "eval_before": self.eval_before,
            # an evaluation at this very step (logged before the save) is not repeated on resume
            "latest_eval": self.latest_eval if self.latest_eval and
            self.latest_eval[0] == self.step else None,
        }
        tensors = {"scheduler": self.optim.scheduler.state_dict()}
        if self.dist.engine is None:  # DeepSpeed saves its (partitioned) optimizer itself
            tensors["optimizer"] = self.optim.optimizer.state_dict()
        own = {"rng": rng_state(), "sampler": self.sampler.state_dict(),
               "ptx_sampler": self.ptx_sampler.state_dict() if self.ptx_sampler else None}
        return plain, tensors, own

    def load_state_dict(self, plain: dict[str, Any], tensors: dict[str, Any],
                        own: dict[str, Any]) -> None:
        from align.ppo.checkpoint import set_rng_state

        self.step = int(plain["step"])
        self.sampler.load_state_dict(own["sampler"])
        if self.ptx_sampler and own["ptx_sampler"]:
            self.ptx_sampler.load_state_dict(own["ptx_sampler"])
        self.kl_ctl.load_state_dict(plain["kl_ctl"])
        self.reward_stats.load_state_dict(plain["reward_stats"])
        self.monitor.load_state_dict(plain["health"])
        self.lr_scale = float(plain["lr_scale"])
        self.eval_before = dict(plain["eval_before"])
        latest = plain.get("latest_eval")
        self.latest_eval = (int(latest[0]), dict(latest[1])) if latest else None
        if "optimizer" in tensors:
            self.optim.optimizer.load_state_dict(tensors["optimizer"])
        self.optim.scheduler.load_state_dict(tensors["scheduler"])
        set_rng_state(own["rng"])

    def save(self, healthy: bool) -> Path:
        """Save checkpoint-<step> atomically; rotate old ones but keep the last healthy one."""
        from align.checkpoints import rotate, run_record
        from align.ppo.checkpoint import save_checkpoint

        if healthy:
            self.healthy_step = self.step
        path = save_checkpoint(self.out, self.step, self.roles, *self.state_dict(), self.dist,
                               run_record(self.cfg), healthy)
        if self.dist.is_main:
            rotate(self.out, self.cfg.train.save_total_limit)
        self.dist.barrier()
        return path

    def restore(self, step: int) -> None:
        """Load checkpoint-<step>: weights, optimizer, schedules, RNG and all counters."""
        from align.checkpoints import checkpoint_dir
        from align.ppo.checkpoint import load_checkpoint

        self.load_state_dict(*load_checkpoint(checkpoint_dir(self.out, step), self.roles,
                                              self.dist))
