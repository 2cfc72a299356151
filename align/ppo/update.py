"""Steps 2-4 of a PPO iteration: shape rewards, estimate advantages, update actor and critic.

Each function reads its switches from PPOConfig and calls the pure math in ``losses.py``; the
guards here are the one-to-three-line "trick" switches of STYLE.md section 3.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import torch
from torch import Tensor

from align.health.detectors import SKIPPED
from align.ppo.config import PPOConfig
from align.ppo.kl_control import KLController
from align.ppo.losses import (clip_advantages, entropy_from_logits, explained_variance, gae,
                              gather_logprobs, kl_penalty, masked_mean, masked_sum,
                              masked_whiten, policy_loss, token_rewards, value_loss)
from align.ppo.models import token_scores, trainable
from align.ppo.reward_norm import RunningMoments
from align.ppo.rollout import Experience, policy_logits


def compute_rewards(a: PPOConfig, exp: Experience, kl_ctl: KLController,
                    reward_stats: RunningMoments) -> dict[str, float]:
    """Shape the RM score (EOS penalty, normalisation, clip) and add the token-level KL penalty.

    Sets ``exp.rewards`` (B, T); returns reward and KL metrics.
    """
    scores = exp.scores.clone()
    if a.missing_eos_penalty:
        scores = torch.where(exp.ended, scores, scores - a.missing_eos_penalty)
    if a.reward_norm:
        reward_stats.update(scores.tolist())
        scores = (scores - reward_stats.mean) / (reward_stats.std + 1e-8)
    if a.reward_clip:
        scores = scores.clamp(-a.reward_clip, a.reward_clip)
    kl = kl_penalty(exp.logprobs, exp.ref_logprobs, a.kl_estimator)  # (B, T)
    exp.rewards = token_rewards(scores, kl, exp.mask, kl_ctl.value)
    if a.whiten_rewards:
        exp.rewards = masked_whiten(exp.rewards, exp.mask, shift_mean=False)
    kl_per_response = masked_sum(kl, exp.mask, dim=1)  # (B,) nats per response
    return {
        "reward/raw": exp.scores.mean().item(),
        "reward/normalized": scores.mean().item(),
        "objective/kl": kl_per_response.mean().item(),
        "objective/kl_coef": kl_ctl.value,
        "objective/rlhf_reward": (scores - kl_ctl.value * kl_per_response).mean().item(),
    }


def compute_advantages(a: PPOConfig, exp: Experience) -> dict[str, float]:
    """GAE over response tokens, then whitening and clipping; sets advantages and returns."""
    advantages, returns = gae(exp.rewards, exp.values, exp.mask, a.gamma, a.lam)
    if a.whiten_advantages:
        advantages = masked_whiten(advantages, exp.mask)
    if a.advantage_clip:
        advantages = clip_advantages(advantages, a.advantage_clip)
    exp.advantages, exp.returns = advantages, returns
    return {
        "value/explained_var": explained_variance(exp.values, returns, exp.mask).item(),
        "value/mean": masked_mean(exp.values, exp.mask).item(),
        "value/returns": masked_mean(returns, exp.mask).item(),
    }


def actor_loss(actor: Any, mb: Experience, a: PPOConfig) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped policy loss on a micro-batch, minus the entropy bonus if asked."""
    ids, attn, pos = mb.sequences()
    logits = policy_logits(actor, ids, attn, pos, mb.response_ids.shape[1], a.temperature)
    logprobs = gather_logprobs(logits, mb.response_ids)
    loss, m = policy_loss(logprobs, mb.logprobs, mb.advantages, mb.mask, clip_low=a.cliprange,
                          clip_high=a.cliprange, dual_clip=a.dual_clip)
    metrics = {"loss/policy": loss.detach(), "policy/clipfrac": m["clipfrac"],
               "policy/approx_kl": m["approx_kl"], "policy/ratio": m["ratio"]}
    if a.entropy_coef:
        entropy = masked_mean(entropy_from_logits(logits), mb.mask)
        loss = loss - a.entropy_coef * entropy
        metrics["loss/entropy"] = entropy.detach()
    return loss, metrics


def critic_loss(critic: Any, mb: Experience, a: PPOConfig) -> tuple[Tensor, dict[str, Tensor]]:
    """Value loss on a micro-batch (clipped around the rollout values if asked), times vf_coef."""
    ids, attn, pos = mb.sequences()
    P, T = mb.prompt_ids.shape[1], mb.response_ids.shape[1]
    values = token_scores(critic, ids, attn, pos)[:, P - 1:P - 1 + T]
    loss, m = value_loss(values, mb.values, mb.returns, mb.mask, clip=a.cliprange_value)
    return a.vf_coef * loss, {"loss/value": loss.detach(), "value/clipfrac": m["clipfrac"]}


def ptx_loss(actor: Any, ids: Tensor, mask: Tensor) -> Tensor:
    """Next-token loss on a batch of SFT/pretraining text (InstructGPT's PPO-ptx term).

    Shapes: ids, mask (B, L), right-padded. Returns a scalar.
    """
    logits = actor(input_ids=ids, attention_mask=mask.long(), use_cache=False).logits
    logprobs = gather_logprobs(logits[:, :-1], ids[:, 1:])
    return -masked_mean(logprobs, mask[:, 1:])


def optimizer_step(model: Any, optimizer: Any, scheduler: Any, max_grad_norm: float) -> float:
    """Clip the global gradient norm (Secrets of RLHF), step, and return the pre-clip norm.
    A non-finite norm (a NaN/inf loss or gradient) skips the update, schedule included, so
    the weights stay finite."""
    limit = max_grad_norm if max_grad_norm > 0 else float("inf")
    norm = float(torch.nn.utils.clip_grad_norm_(trainable(model), limit))
    if math.isfinite(norm):
        optimizer.step()
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return norm


def accumulate(actor: Any, critic: Any, mini: Experience, micro_size: int, a: PPOConfig,
               train_actor: bool, ptx_batches: Any = None) -> dict[str, list[float]]:
    """Backward passes over one mini-batch in micro-batches of ``micro_size`` sequences.

    Each micro-batch's token-mean loss is weighted by its share of the mini-batch's tokens, so
    the accumulated gradient equals that of the whole mini-batch at once (whatever
    ``micro_size``). ``ptx_batches()`` returns the next (ids, mask) PTX batch.
    """
    stats: dict[str, list[float]] = defaultdict(list)
    tokens = mini.mask.sum().clamp(min=1)
    starts = range(0, mini.batch_size, micro_size)
    for start in starts:
        mb = mini.select(torch.arange(start, min(start + micro_size, mini.batch_size),
                                      device=mini.mask.device))
        weight = mb.mask.sum() / tokens
        parts = []
        if train_actor:
            loss, metrics = actor_loss(actor, mb, a)
            loss = loss * weight
            if a.ptx_coef and ptx_batches is not None:
                ptx = ptx_loss(actor, *ptx_batches())
                loss = loss + a.ptx_coef * ptx / len(starts)
                metrics["loss/ptx"] = ptx.detach()
            loss.backward()
            parts.append(metrics)
        loss, metrics = critic_loss(critic, mb, a)
        (loss * weight).backward()
        parts.append(metrics)
        for m in parts:
            for k, v in m.items():
                stats[k].append(float(v))
    return stats


def ppo_update(roles: Any, optim: Any, exp: Experience, a: PPOConfig, micro_size: int,
               max_grad_norm: float, train_actor: bool, ptx_batches: Any = None
               ) -> dict[str, float]:
    """``ppo_epochs`` passes over the rollout, each shuffled into ``num_mini_batches`` steps.

    Returns the mean of each loss and statistic over all micro-batches and optimizer steps.
    """
    actor, critic = roles.actor, roles.critic
    actor.train()
    critic.train()
    stats: dict[str, list[float]] = defaultdict(list)
    B = exp.batch_size
    mini_size = B // a.num_mini_batches
    for _ in range(a.ppo_epochs):
        order = torch.randperm(B).to(exp.mask.device)
        for start in range(0, B, mini_size):
            mini = exp.select(order[start:start + mini_size])
            for k, v in accumulate(actor, critic, mini, micro_size, a, train_actor,
                                   ptx_batches).items():
                stats[k] += v
            if train_actor:
                stats["grad/actor_norm"].append(optimizer_step(
                    actor, optim.actor, optim.actor_scheduler, max_grad_norm))
            stats["grad/critic_norm"].append(optimizer_step(
                critic, optim.critic, optim.critic_scheduler, max_grad_norm))
    actor.eval()
    critic.eval()
    # means over the finite values; the skipped updates are counted (align.health's NaN
    # detector stops a run that keeps skipping)
    skipped = sum(not math.isfinite(n) for k in ("grad/actor_norm", "grad/critic_norm")
                  for n in stats.get(k, []))
    out = {}
    for k, v in stats.items():
        finite = [x for x in v if math.isfinite(x)]
        out[k] = sum(finite) / len(finite) if finite else float("nan")
    return out | {SKIPPED: float(skipped)}
