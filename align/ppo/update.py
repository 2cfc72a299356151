"""Steps 2-4 of a PPO iteration: shape rewards, estimate advantages, update actor and critic.

Each function reads its switches from PPOConfig and calls the pure math in ``losses.py``; the
guards here are the one-to-three-line "trick" switches (one config field each, see
CONTRIBUTING.md, "Adding a flag").
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import torch
from torch import Tensor

from align.health.detectors import SKIPPED
from align.ppo.config import PPOConfig
from align.ppo.losses import (clip_advantages, entropy_from_logits, explained_variance, gae,
                              gather_logprobs, kl_penalty, masked_mean, masked_sum,
                              masked_whiten, policy_loss, token_rewards, value_loss)
from align.ppo.models import ACTOR, CRITIC
from align.ppo.reward_norm import RunningMoments
from align.ppo.rollout import Experience


def compute_rewards(a: PPOConfig, exp: Experience, kl_coef: float,
                    reward_stats: RunningMoments, eos_penalty: float | None = None
                    ) -> tuple[Tensor, dict[str, float]]:
    """Shape the RM score (EOS penalty, normalisation, clip) and add the token-level KL penalty.

    ``exp`` is the whole rollout batch (gathered over all processes); ``eos_penalty`` is the
    resolved --missing-eos-penalty (``PPORun.eos_penalty``; None: the config's value, unset
    counting as 0). Returns the per-token rewards (B, T) and the reward and KL metrics;
    updates ``reward_stats`` with the scores.
    """
    scores = exp.scores.clone()
    penalty = (a.missing_eos_penalty or 0.0) if eos_penalty is None else eos_penalty
    if penalty:
        scores = torch.where(exp.ended, scores, scores - penalty)
    if a.reward_norm:
        reward_stats.update(scores.tolist())
        scores = reward_stats.normalize(scores)
    if a.reward_clip:
        scores = scores.clamp(-a.reward_clip, a.reward_clip)
    kl = kl_penalty(exp.logprobs, exp.ref_logprobs, a.kl_estimator)  # (B, T)
    rewards = token_rewards(scores, kl, exp.mask, kl_coef)
    if a.whiten_rewards:
        rewards = masked_whiten(rewards, exp.mask, shift_mean=False)
    kl_per_response = masked_sum(kl, exp.mask, dim=1)  # (B,) nats per response
    return rewards, {
        "reward/raw": exp.scores.mean().item(),
        "reward/raw_std": exp.scores.std().item() if exp.batch_size > 1 else 0.0,
        "reward/normalized": scores.mean().item(),
        "objective/kl": kl_per_response.mean().item(),
        "objective/kl_coef": kl_coef,
        "objective/rlhf_reward": (scores - kl_coef * kl_per_response).mean().item(),
    }


def compute_advantages(a: PPOConfig, exp: Experience, rewards: Tensor
                       ) -> tuple[Tensor, Tensor, dict[str, float]]:
    """GAE over response tokens, then whitening and clipping.

    Returns advantages and returns (B, T) and the critic's metrics."""
    advantages, returns = gae(rewards, exp.values, exp.mask, a.gamma, a.lam)
    if a.whiten_advantages:
        advantages = masked_whiten(advantages, exp.mask)
    if a.advantage_clip:
        advantages = clip_advantages(advantages, a.advantage_clip)
    return advantages, returns, {
        "value/explained_var": explained_variance(exp.values, returns, exp.mask).item(),
        "value/mean": masked_mean(exp.values, exp.mask).item(),
        "value/returns": masked_mean(returns, exp.mask).item(),
    }


def actor_loss(model: Any, mb: Experience, a: PPOConfig) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped policy loss on a micro-batch, minus the entropy bonus if asked (the actor's
    adapter active)."""
    ids, attn, pos = mb.sequences()
    logits = model(ids, attn, pos, T=mb.response_ids.shape[1], temperature=a.temperature)
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


def critic_loss(model: Any, mb: Experience, a: PPOConfig) -> tuple[Tensor, dict[str, Tensor]]:
    """Value loss on a micro-batch (clipped around the rollout values if asked), times vf_coef
    (the critic's adapter active)."""
    ids, attn, pos = mb.sequences()
    values = model(ids, attn, pos, T=mb.response_ids.shape[1])
    loss, m = value_loss(values, mb.values, mb.returns, mb.mask, clip=a.cliprange_value)
    return a.vf_coef * loss, {"loss/value": loss.detach(), "value/clipfrac": m["clipfrac"]}


def ptx_loss(model: Any, ids: Tensor, mask: Tensor) -> Tensor:
    """Next-token loss on a batch of SFT/pretraining text (InstructGPT's PPO-ptx term).

    Shapes: ids, mask (B, L), right-padded. Returns a scalar.
    """
    logits = model(ids, mask.long(), None, lm=True)
    logprobs = gather_logprobs(logits[:, :-1], ids[:, 1:])
    return -masked_mean(logprobs, mask[:, 1:])


def optimizer_step(optim: Any, groups: list[list[torch.nn.Parameter]], max_grad_norm: float
                   ) -> list[float]:
    """Clip each group's global gradient norm (Secrets of RLHF; actor and critic apart), then
    step the optimizer and its schedule; return the pre-clip norms. A non-finite norm (a
    NaN/inf loss or gradient) skips the update, schedule included, so the weights stay
    finite (align.health's NaN detector stops a run that keeps skipping)."""
    limit = max_grad_norm if max_grad_norm > 0 else float("inf")
    norms = [float(torch.nn.utils.clip_grad_norm_(params, limit)) for params in groups]
    if all(math.isfinite(n) for n in norms):
        optim.step()
    else:
        optim.optimizer.zero_grad(set_to_none=True)
    return norms


def accumulate(model: Any, mini: Experience, micro_size: int, a: PPOConfig, train_actor: bool,
               scale: Tensor, ptx_batches: Any = None, dist: Any = None
               ) -> dict[str, list[float]]:
    """Backward passes over this process's share of one mini-batch, in micro-batches of
    ``micro_size`` sequences.

    Each micro-batch's token-mean loss is weighted by ``tokens / scale``, where ``scale`` is
    the mini-batch's token count over all processes divided by the number of processes (whose
    gradients are averaged afterwards): the accumulated gradient then equals that of the whole
    mini-batch at once, whatever ``micro_size`` and however many processes share it. Returns
    each metric as (value x tokens) sums and the token count under ``"tokens"``, so that means
    over micro-batches and processes can be weighted the same way.
    """
    stats: dict[str, list[float]] = defaultdict(list)
    starts = range(0, mini.batch_size, micro_size)
    # forward passes go through the DeepSpeed engine when there is one (it counts them)
    forward = dist.engine if dist is not None and dist.engine is not None else model

    def backward(loss: Tensor, last: bool) -> None:
        if dist is None:
            loss.backward()
        else:
            dist.backward(loss, last)

    for start in starts:
        mb = mini.select(torch.arange(start, min(start + micro_size, mini.batch_size),
                                      device=mini.mask.device))
        tokens = mb.mask.sum()
        weight = tokens / scale
        parts = []
        if train_actor:
            with model.adapter(ACTOR):
                loss, metrics = actor_loss(forward, mb, a)
                loss = loss * weight
                if a.ptx_coef and ptx_batches is not None:
                    ptx = ptx_loss(forward, *ptx_batches())
                    loss = loss + a.ptx_coef * ptx / len(starts)
                    metrics["loss/ptx"] = ptx.detach()
                backward(loss, False)
            parts.append(metrics)
        with model.adapter(CRITIC):
            loss, metrics = critic_loss(forward, mb, a)
            backward(loss * weight, start == starts[-1])
        parts.append(metrics)
        n = float(tokens)
        stats["tokens"].append(n)
        for m in parts:
            for k, v in m.items():
                stats[k].append(float(v) * n)
    return stats


def ppo_update(roles: Any, optim: Any, exp: Experience, a: PPOConfig, micro_size: int,
               max_grad_norm: float, train_actor: bool, dist: Any, ptx_batches: Any = None
               ) -> dict[str, float]:
    """``ppo_epochs`` passes over this process's rows of the rollout, each shuffled into
    ``num_mini_batches`` optimizer steps (every process takes the same steps together).

    Returns the token-weighted mean of each loss and statistic over all micro-batches, epochs
    and processes, and the mean gradient norms.
    """
    model = roles.model
    model.train()
    sums: dict[str, float] = defaultdict(float)
    norms: dict[str, list[float]] = defaultdict(list)
    skipped = 0
    B = exp.batch_size
    mini_size = B // a.num_mini_batches
    for _ in range(a.ppo_epochs):
        order = torch.randperm(B).to(exp.mask.device)
        for start in range(0, B, mini_size):
            mini = exp.select(order[start:start + mini_size])
            scale = dist.sum(mini.mask.sum().float()).clamp(min=1) / dist.world
            dist.start_accumulation()
            for k, v in accumulate(model, mini, micro_size, a, train_actor, scale,
                                   ptx_batches, dist).items():
                sums[k] += sum(v)
            if dist.engine is not None:  # DeepSpeed reduces, clips (jointly) and steps
                dist.engine.step()
                norms["grad/norm"].append(float(dist.engine.get_global_grad_norm() or 0.0))
                optim.scheduler.step()
                continue
            dist.average_gradients(model.trainable)
            groups = {"grad/critic_norm": model.critic_params()}
            if train_actor:
                groups = {"grad/actor_norm": model.actor_params()} | groups
            step_norms = optimizer_step(optim, list(groups.values()), max_grad_norm)
            for key, norm in zip(groups, step_norms):
                norms[key].append(norm)
            skipped += not all(math.isfinite(n) for n in step_norms)
    model.eval()
    keys = sorted(sums)
    totals = dist.sum(torch.tensor([sums[k] for k in keys], dtype=torch.float64,
                                   device=exp.mask.device)).tolist()
    total = dict(zip(keys, totals))
    tokens = max(total.pop("tokens"), 1.0)
    out = {k: v / tokens for k, v in total.items()}
    for k, v in norms.items():
        finite = [x for x in v if math.isfinite(x)]
        out[k] = sum(finite) / len(finite) if finite else float("nan")
    return out | {SKIPPED: float(skipped)}
