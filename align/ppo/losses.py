"""PPO's math as pure tensor functions: KL estimators, rewards, GAE, whitening, losses.

Every function takes tensors and plain numbers only (never a config object) and imports only
torch. ``mask`` is always True where a token counts (a token the model sampled, up to and
including its EOS) and False on padding and, in a multi-turn episode, on the tokens the
environment wrote (tool results and the template's framing of them). Shape letters: B batch,
T response tokens, V vocabulary. Losses return ``(loss, metrics)`` with detached scalar metrics.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Metrics = dict[str, Tensor]


# ATen sums more than 32,768 elements into one number in one slice per thread, so the rounding
# of a full sum depends on the thread count; a sum along a dimension gives each output to one
# thread whole, whatever their number.
SUM_BLOCK = 1 << 15


def fixed_order_sum(x: Tensor) -> Tensor:
    """Sum of all elements of ``x``, the same bits at any thread count: blocks of
    :data:`SUM_BLOCK` elements are summed each on its own, then the block sums (recursively).
    Returns a scalar."""
    flat = x.reshape(-1)
    n = flat.numel()
    if n <= SUM_BLOCK:
        return flat.sum()
    whole = n - n % SUM_BLOCK
    parts = flat[:whole].view(-1, SUM_BLOCK).sum(1)
    if whole < n:
        parts = torch.cat([parts, flat[whole:].sum().reshape(1)])
    return fixed_order_sum(parts)


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Sum of ``x`` where ``mask`` is True (over everything: the same bits at any thread
    count).  Shapes: x, mask: (B, T)."""
    x = torch.where(mask.bool(), x, torch.zeros_like(x))
    return fixed_order_sum(x) if dim is None else x.sum(dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` over the True entries of ``mask``; 0 (not NaN) where nothing counts.

    Shapes: x, mask: (B, T). Returns a scalar, or (B,) with ``dim=1``.
    """
    count = mask.bool().sum() if dim is None else mask.bool().sum(dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1)


def masked_var(x: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """Variance of the masked entries of ``x`` (Bessel-corrected when ``unbiased``).

    Shapes: x, mask: (B, T). Returns a scalar; 0 when fewer than two entries count.
    """
    count = mask.bool().sum()
    mean = masked_mean(x, mask)
    var = masked_sum((x - mean) ** 2, mask)
    if unbiased:
        return var / (count - 1).clamp(min=1)
    return var / count.clamp(min=1)


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """Normalise the masked entries of ``x`` to unit variance (and zero mean if ``shift_mean``).

    Used for advantage whitening (Andrychowicz et al. 2021, "What matters in on-policy RL",
    and TRL/OpenRLHF) and, scale only, reward whitening. Padding stays 0.
    Shapes: x, mask: (B, T). Returns (B, T).
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(mask.bool(), out, torch.zeros_like(out))


def gather_logprobs(logits: Tensor, tokens: Tensor) -> Tensor:
    """log softmax(logits) at ``tokens``: log π(a_t | s_t) = z_a - logsumexp(z).

    One sequence at a time, so the float32 copy of a large-vocabulary (T, V) slice is the only
    extra memory, never a (B, T, V) one.
    Shapes: logits (B, T, V) where logits[:, t] predicts tokens[:, t]; tokens (B, T).
    Returns (B, T) in float32.
    """
    rows = []
    for z, a in zip(logits, tokens):
        z = z.float()
        rows.append(z.gather(-1, a.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(z, dim=-1))
    return torch.stack(rows)


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy H(π(·|s_t)) = logsumexp(z) - Σ softmax(z)·z of each position's distribution.

    One sequence at a time (see :func:`gather_logprobs`).
    Shapes: logits (B, T, V). Returns (B, T) in float32.
    """
    rows = []
    for z in logits:
        z = z.float()
        rows.append(torch.logsumexp(z, dim=-1) - (torch.softmax(z, dim=-1) * z).sum(-1))
    return torch.stack(rows)


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor,
               estimator: Literal["k1", "k2", "k3"] = "k1") -> Tensor:
    """Per-token estimate of KL(π || π_ref) from the sampled token's log-probs.

    With log r = log π_ref(a) - log π(a) and a ~ π (Schulman 2020, "Approximating KL
    divergence"): k1 = -log r (unbiased, can be negative), k2 = (log r)^2 / 2 (low variance,
    biased), k3 = (r - 1) - log r (unbiased, never negative).
    Shapes: logprobs, ref_logprobs (B, T). Returns (B, T).
    """
    log_ratio = ref_logprobs - logprobs
    if estimator == "k1":
        return -log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio ** 2
    if estimator == "k3":
        return torch.expm1(log_ratio) - log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; choose from [k1, k2, k3]")


def last_index(mask: Tensor) -> Tensor:
    """Index of each row's last True entry (0 for a row with none).

    The last token the model sampled: the end of a single-turn response, or of a multi-turn
    episode whose sampled tokens are interleaved with the environment's.
    Shapes: mask (B, T). Returns (B,) long.
    """
    T = mask.shape[1]
    return (T - 1 - mask.bool().flip(1).long().argmax(1)) * mask.bool().any(1)


def token_rewards(scores: Tensor, kl: Tensor, mask: Tensor, kl_coef: float) -> Tensor:
    """Per-token reward: r_t = -β·KL_t, plus the sequence score on the last response token.

    Ziegler et al. 2019, eq. 2 applied per token (Stiennon et al. 2020; the "token level
    KL-penalty" of "Advanced Tricks for Training LLMs with PPO"). The last token is the EOS when
    the response ended, else the last sampled one. Tokens outside ``mask`` (padding, and in a
    multi-turn episode the tokens the environment wrote) get neither KL nor score.
    Shapes: scores (B,); kl, mask (B, T). Returns (B, T), zero outside the mask.
    """
    rewards = torch.where(mask.bool(), -kl_coef * kl, torch.zeros_like(kl))
    last = last_index(mask)  # (B,) index of the last sampled token
    has_tokens = mask.bool().any(1)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last] += torch.where(has_tokens, scores.to(rewards.dtype),
                                       torch.zeros_like(scores, dtype=rewards.dtype))
    return rewards


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float
        ) -> tuple[Tensor, Tensor]:
    """Generalized Advantage Estimation over response tokens (Schulman et al. 2016, eq. 16).

    δ_t = r_t + γ V(s_{t'}) - V(s_t);  A_t = Σ_l (γλ)^l δ_{t+l};  returns R_t = A_t + V(s_t),
    where t' is the next token in ``mask``: the tokens a row's mask leaves out (padding, and in
    a multi-turn episode the tokens the environment wrote between the model's turns) are
    skipped, so the sampled tokens of an episode are one trajectory (as verl and OpenRLHF run
    GAE on multi-turn rollouts). The value after the last sampled token is 0 (the episode ends
    at EOS or at the token limit). Skipped tokens get advantage and return 0.
    Shapes: rewards, values, mask (B, T). Returns (advantages, returns), both (B, T).
    """
    m = mask.to(values.dtype)
    keep = mask.bool()
    values = values * m
    rewards = rewards * m
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    next_value = torch.zeros_like(values[:, 0])  # V of the next sampled token (0 past the end)
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = torch.where(keep[:, t], delta + gamma * lam * running, running)
        next_value = torch.where(keep[:, t], values[:, t], next_value)
        advantages[:, t] = running * m[:, t]
    return advantages, (advantages + values) * m


def clip_advantages(advantages: Tensor, clip: float) -> Tensor:
    """Clamp advantages to [-clip, clip] (MOSS-RLHF's advantage clip).  Shapes: (B, T)."""
    return advantages.clamp(-clip, clip)


def policy_loss(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, *,
                clip_low: float = 0.2, clip_high: float = 0.2, dual_clip: float = 0.0
                ) -> tuple[Tensor, Metrics]:
    """Clipped surrogate (Schulman et al. 2017, eq. 7); dual-clip (Ye et al. 2020, eq. 5) when
    ``dual_clip`` > 0 (0 is off).

    L = -E[min(ρ A, clip(ρ, 1-ε_low, 1+ε_high) A)] with ρ = π/π_old. Dual clip bounds the loss
    of a negative-advantage token by -c·A, so one huge ratio cannot dominate the batch.
    Shapes: logprobs, old_logprobs, advantages, mask (B, T).
    Returns: scalar, {clipfrac, approx_kl (k3 estimate of KL(π_old || π)), ratio}.
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    losses = torch.maximum(unclipped, clipped)
    if dual_clip:
        losses = torch.where(advantages < 0, torch.minimum(losses, -dual_clip * advantages),
                             losses)
    loss = masked_mean(losses, mask)
    with torch.no_grad():
        metrics = {
            "clipfrac": masked_mean((clipped > unclipped).float(), mask),
            # k3 of KL(π_old || π) from tokens sampled by π_old: (ρ - 1) - log ρ
            "approx_kl": masked_mean(torch.expm1(log_ratio) - log_ratio, mask),
            "ratio": masked_mean(ratio, mask),
        }
    return loss, metrics


def value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor,
               clip: float = 0.0) -> tuple[Tensor, Metrics]:
    """Value loss ½·E[(V - R)^2], clipped like the policy when ``clip`` > 0 (0 is off).

    Clipped form (Schulman et al. 2017 baselines; Secrets of RLHF eq. 14):
    ½·E[max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2)].
    Shapes: values, old_values, returns, mask (B, T). Returns: scalar, {clipfrac}.
    """
    unclipped = (values - returns) ** 2
    if clip:
        # only values that moved beyond the range are replaced: V_old + (V - V_old) may differ
        # from V in the last bit, which would count unclipped values as clipped
        outside = (values - old_values).abs() > clip
        v_clipped = torch.where(outside, old_values + (values - old_values).clamp(-clip, clip),
                                values)
        clipped = (v_clipped - returns) ** 2
        losses = torch.maximum(unclipped, clipped)
        clipfrac = masked_mean((clipped > unclipped).float(), mask).detach()
    else:
        losses, clipfrac = unclipped, torch.zeros((), device=values.device)
    return 0.5 * masked_mean(losses, mask), {"clipfrac": clipfrac}


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """1 - Var(R - V) / Var(R) over masked tokens: 1 is a perfect critic, <= 0 a useless one.

    Shapes: values, returns, mask (B, T). Returns a scalar (NaN-free: 0 when Var(R) is 0).
    """
    var_returns = masked_var(returns, mask)
    if var_returns <= 0:
        return torch.zeros((), device=values.device)
    return 1.0 - masked_var(returns - values, mask) / var_returns
