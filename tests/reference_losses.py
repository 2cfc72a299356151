"""Offline preference losses as pure tensor functions, written from the papers' equations: the
test oracle for the TRL-backed algorithms (it does not ship in align/).

The TRL trainers do the training; ``tests/algos/test_losses_vs_trl.py`` checks on a fixed batch
that each trainer computes the same number as the function here (to 1e-5), so a sign, a
misplaced β, a missing length normalisation or a different NLL reduction in a TRL release shows
up as a failing test. ``tests/test_reference_losses.py`` checks these functions against numbers
worked out by hand.

Conventions:
- ``*_logps`` are sequence-level log-probabilities, shape (B,): the sum over a completion's
  tokens of log π(y_t | x, y_<t).
- ``*_logprobs`` are token-level log-probabilities, shape (B, T), with a ``mask`` that is 1
  (True) where a token counts. Functions that need a length normalisation take these.
- Per-row sums and means over the masked tokens are align.ppo.losses' ``masked_sum`` and
  ``masked_mean`` with ``dim=-1`` (one meaning per name: padding is zeroed, an empty row
  gives 0).
- Every function returns ``(loss, metrics)``: a scalar to minimise and a dict of detached
  scalars named with slash namespaces (``rewards/margins``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from align.ppo.losses import masked_mean, masked_sum

Metrics = dict[str, Tensor]


def nll_loss(logprobs: Tensor, mask: Tensor, reduction: str = "token") -> Tensor:
    """Negative log-likelihood of the masked tokens.

    ``reduction="token"``: the mean over every counted token of the batch (long answers weigh
    more; what ``nn.CrossEntropyLoss`` over a flattened batch gives, and what TRL 1.16 uses for
    its SFT/NLL terms). ``reduction="sequence"``: each answer's NLL divided by its own length,
    then averaged over the batch (the per-sequence normalisation RPO's paper writes).

    Shapes: logprobs, mask (B, T).  Returns: scalar.
    """
    if reduction == "token":
        return -masked_mean(logprobs, mask)
    if reduction == "sequence":
        return -masked_mean(logprobs, mask, dim=-1).mean()
    raise ValueError(f"reduction {reduction!r} is not valid; choose from [token, sequence]")


def _reward_metrics(chosen_rewards: Tensor, rejected_rewards: Tensor) -> Metrics:
    chosen_rewards, rejected_rewards = chosen_rewards.detach(), rejected_rewards.detach()
    return {
        "rewards/chosen": chosen_rewards.mean(),
        "rewards/rejected": rejected_rewards.mean(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean(),
    }


def _preference_terms(beta: float, delta: Tensor, label_smoothing: float) -> Tensor:
    """−(1 − ε) log σ(β Δ) − ε log σ(−β Δ), per pair (ε = 0: the plain logistic loss)."""
    return -(1 - label_smoothing) * F.logsigmoid(beta * delta) \
        - label_smoothing * F.logsigmoid(-beta * delta)


def dpo_loss(chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor,
             ref_rejected_logps: Tensor, beta: float, label_smoothing: float = 0.0
             ) -> tuple[Tensor, Metrics]:
    """DPO (Rafailov et al. 2023, Eq. 7), with conservative label smoothing ε (cDPO).

    h = (log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))
    loss = −(1 − ε) log σ(β h) − ε log σ(−β h), averaged over the batch; ε = 0 is plain DPO.
    The implicit reward of an answer is β (log π − log π_ref).

    Shapes: all log-probabilities (B,).  Returns: scalar, {rewards/chosen, rewards/rejected,
    rewards/margins, rewards/accuracies}.
    """
    chosen_ratio = chosen_logps - ref_chosen_logps
    rejected_ratio = rejected_logps - ref_rejected_logps
    losses = _preference_terms(beta, chosen_ratio - rejected_ratio, label_smoothing)
    return losses.mean(), _reward_metrics(beta * chosen_ratio, beta * rejected_ratio)


def robust_dpo_loss(chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor,
                    ref_rejected_logps: Tensor, beta: float, label_smoothing: float
                    ) -> tuple[Tensor, Metrics]:
    """Robust DPO (rDPO, Chowdhury et al. 2024): unbiased under a label-flip rate ε.

    loss = [−(1 − ε) log σ(β h) + ε log σ(−β h)] / (1 − 2ε), with h as in :func:`dpo_loss`.
    Unlike cDPO the flipped term enters with a minus sign: the estimate is debiased, not smoothed.

    Shapes: all log-probabilities (B,).  Returns: scalar, reward metrics.
    """
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    chosen_ratio = chosen_logps - ref_chosen_logps
    rejected_ratio = rejected_logps - ref_rejected_logps
    h = chosen_ratio - rejected_ratio
    eps = label_smoothing
    losses = (-(1 - eps) * F.logsigmoid(beta * h) + eps * F.logsigmoid(-beta * h)) / (1 - 2 * eps)
    return losses.mean(), _reward_metrics(beta * chosen_ratio, beta * rejected_ratio)


def ipo_loss(chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor,
             ref_rejected_logps: Tensor, chosen_lengths: Tensor, rejected_lengths: Tensor,
             beta: float) -> tuple[Tensor, Metrics]:
    """IPO (Azar et al. 2023, Eq. 17) with τ = β and per-token log-ratios.

    h = (log π(y_w|x) − log π_ref(y_w|x)) / |y_w| − (log π(y_l|x) − log π_ref(y_l|x)) / |y_l|
    loss = (h − 1 / (2β))², averaged over the batch.
    The division by the answer lengths is not written in the paper's equation; TRL applies it
    (its comment says the IPO authors confirmed their reported results use it), and so do we,
    so that β means the same thing for short and long answers.

    Shapes: log-probabilities and lengths (B,).  Returns: scalar, reward metrics (per token).
    """
    chosen_ratio = (chosen_logps - ref_chosen_logps) / chosen_lengths.clamp(min=1)
    rejected_ratio = (rejected_logps - ref_rejected_logps) / rejected_lengths.clamp(min=1)
    losses = (chosen_ratio - rejected_ratio - 1.0 / (2.0 * beta)) ** 2
    return losses.mean(), _reward_metrics(chosen_ratio, rejected_ratio)


def ld_logps(chosen_logprobs: Tensor, chosen_mask: Tensor, rejected_logprobs: Tensor,
             rejected_mask: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """Length-desensitised sequence log-probabilities of LD-DPO (arXiv:2409.06411).

    In each pair, the first ``min(|y_w|, |y_l|)`` answer tokens count fully and the tokens
    beyond that length are weighted by ``alpha``: log p = Σ_shared log π + α · Σ_tail log π.
    α = 1 is the plain summed log-probability; α = 0 compares the answers over their common
    length only, so a long answer cannot lose merely by having more tokens. Apply it to the
    policy and the reference alike, then use the results in place of summed log-probabilities.

    Shapes: per-token log-probabilities and masks (B, T) over each side's answer tokens.
    Returns: (chosen, rejected) sequence log-probabilities, each (B,).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")

    def weighted(logprobs: Tensor, mask: Tensor, shared: Tensor) -> Tensor:
        mask = mask.to(logprobs.dtype)
        pos = mask.cumsum(-1)  # 1, 2, ... over answer tokens
        weight = torch.where(pos <= shared[:, None], 1.0, alpha) * mask
        return (logprobs * weight).sum(-1)

    shared = torch.minimum(chosen_mask.sum(-1), rejected_mask.sum(-1)).to(chosen_logprobs.dtype)
    return (weighted(chosen_logprobs, chosen_mask, shared),
            weighted(rejected_logprobs, rejected_mask, shared))


def rpo_loss(chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor,
             ref_rejected_logps: Tensor, chosen_logprobs: Tensor, chosen_mask: Tensor,
             beta: float, alpha: float, nll_reduction: str = "token") -> tuple[Tensor, Metrics]:
    """RPO: DPO plus α times the NLL of the chosen answer (Pang et al. 2024, the DPO+NLL loss).

    loss = DPO(h; β) + α · NLL(y_w | x). The paper normalises each chosen answer's NLL by its
    length (``nll_reduction="sequence"``); TRL 1.16 averages over all chosen-answer tokens of the
    batch (``"token"``, the default here so that it matches what `align rlhf --algo dpo` trains).
    The two agree when every chosen answer in the batch has the same length. The paper weights
    the DPO term instead of the NLL term; at its recommended α = 1 the conventions coincide.

    Shapes: sequence log-probabilities (B,); chosen_logprobs, chosen_mask (B, T) over the chosen
    answers' tokens.  Returns: scalar, reward metrics + {loss/dpo, loss/nll}.
    """
    dpo, metrics = dpo_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps,
                            beta)
    nll = nll_loss(chosen_logprobs, chosen_mask, nll_reduction)
    metrics.update({"loss/dpo": dpo.detach(), "loss/nll": nll.detach()})
    return dpo + alpha * nll, metrics


def kto_loss(logps: Tensor, ref_logps: Tensor, labels: Tensor, kl_logps: Tensor,
             ref_kl_logps: Tensor, beta: float, desirable_weight: float = 1.0,
             undesirable_weight: float = 1.0) -> tuple[Tensor, Metrics]:
    """KTO (Ethayarajh et al. 2024, Eq. 7) on unpaired thumbs-up/down data.

    r = log π(y|x) − log π_ref(y|x);  z₀ = max(0, mean(log π(y'|x) − log π_ref(y'|x))) over
    mismatched pairs (x, y') of the same batch, detached (the paper's biased KL estimate).
    loss(x, y) = λ_D (1 − σ(β (r − z₀))) if y is desirable, λ_U (1 − σ(β (z₀ − r))) otherwise,
    i.e. λ_y − v(x, y); averaged over every example of the batch.

    Shapes: logps, ref_logps, labels (B,) (labels True = desirable); kl_logps, ref_kl_logps (B,).
    Returns: scalar, {kl, rewards/chosen, rewards/rejected}.
    """
    labels = labels.bool()
    z0 = (kl_logps - ref_kl_logps).mean().clamp(min=0).detach()
    ratio = logps - ref_logps
    desirable = desirable_weight * (1 - torch.sigmoid(beta * (ratio - z0)))
    undesirable = undesirable_weight * (1 - torch.sigmoid(beta * (z0 - ratio)))
    losses = torch.where(labels, desirable, undesirable)
    rewards = (beta * ratio).detach()
    metrics: Metrics = {"kl": z0}
    if labels.any():
        metrics["rewards/chosen"] = rewards[labels].mean()
    if (~labels).any():
        metrics["rewards/rejected"] = rewards[~labels].mean()
    return losses.mean(), metrics


def cpo_loss(chosen_logprobs: Tensor, chosen_mask: Tensor, rejected_logprobs: Tensor,
             rejected_mask: Tensor, beta: float, alpha: float = 1.0,
             label_smoothing: float = 0.0) -> tuple[Tensor, Metrics]:
    """CPO (Xu et al. 2024): L_prefer (Eq. 3) plus the NLL term of L_CPO; no reference model.

    L_prefer = −log σ(β log π(y_w|x) − β log π(y_l|x))  (summed log-probabilities; with label
    smoothing ε the cDPO form as in :func:`dpo_loss`).  loss = mean(L_prefer) + α · NLL(y_w),
    the NLL averaged over all chosen-answer tokens of the batch (the token-level cross-entropy
    the authors' and TRL's code use).

    Shapes: *_logprobs, *_mask (B, T), masks set on answer tokens.  Returns: scalar, reward
    metrics (β log π) + {loss/nll}.
    """
    chosen_logps = masked_sum(chosen_logprobs, chosen_mask, dim=-1)
    rejected_logps = masked_sum(rejected_logprobs, rejected_mask, dim=-1)
    prefer = _preference_terms(beta, chosen_logps - rejected_logps, label_smoothing).mean()
    nll = nll_loss(chosen_logprobs, chosen_mask) if alpha else prefer.new_zeros(())
    metrics = _reward_metrics(beta * chosen_logps, beta * rejected_logps)
    metrics["loss/nll"] = nll.detach()
    return prefer + alpha * nll, metrics


def simpo_loss(chosen_logprobs: Tensor, chosen_mask: Tensor, rejected_logprobs: Tensor,
               rejected_mask: Tensor, beta: float, gamma: float, alpha: float = 0.0
               ) -> tuple[Tensor, Metrics]:
    """SimPO (Meng et al. 2024, Eq. 6), optionally with CPO's NLL term (weight α).

    loss = −log σ(β/|y_w| · log π(y_w|x) − β/|y_l| · log π(y_l|x) − γ) + α · NLL(y_w).
    The rewards are length-normalised (mean token log-probability) and there is no reference
    model. α = 0 is the original SimPO; α > 0 is the "CPO-SimPO" mix ms-swift uses by default.

    Shapes: *_logprobs, *_mask (B, T).  Returns: scalar, reward metrics (β · mean log π) +
    {loss/nll}.
    """
    chosen_avg = masked_mean(chosen_logprobs, chosen_mask, dim=-1)
    rejected_avg = masked_mean(rejected_logprobs, rejected_mask, dim=-1)
    prefer = -F.logsigmoid(beta * (chosen_avg - rejected_avg) - gamma).mean()
    nll = nll_loss(chosen_logprobs, chosen_mask) if alpha else prefer.new_zeros(())
    metrics = _reward_metrics(beta * chosen_avg, beta * rejected_avg)
    metrics["loss/nll"] = nll.detach()
    return prefer + alpha * nll, metrics


def log1m_exp(x: Tensor) -> Tensor:
    """log(1 − eˣ) for x < 0, via expm1 so that x near 0 keeps its precision."""
    return torch.log(-torch.expm1(x))


def orpo_loss(chosen_logprobs: Tensor, chosen_mask: Tensor, rejected_logprobs: Tensor,
              rejected_mask: Tensor, beta: float, nll_mask: Tensor | None = None
              ) -> tuple[Tensor, Metrics]:
    """ORPO (Hong et al. 2024, Eqs. 6-7): SFT loss plus λ times an odds-ratio loss; λ = β here.

    P(y|x) = exp(mean token log π(y|x)) (length-normalised), odds(y|x) = P / (1 − P),
    L_OR = −log σ(log odds(y_w|x) − log odds(y_l|x)),  loss = NLL(y_w) + β · mean(L_OR).
    The NLL counts the tokens in ``nll_mask`` (default: the chosen answer, as in the paper).
    TRL 1.16 computes it over the prompt and the answer; pass that mask to reproduce it.

    Shapes: *_logprobs, *_mask, nll_mask (B, T).  Returns: scalar, {loss/nll, loss/or,
    log_odds_ratio, rewards/...}.
    """
    chosen_avg = masked_mean(chosen_logprobs, chosen_mask, dim=-1)
    rejected_avg = masked_mean(rejected_logprobs, rejected_mask, dim=-1)
    log_odds = (chosen_avg - log1m_exp(chosen_avg)) - (rejected_avg - log1m_exp(rejected_avg))
    odds_ratio_loss = -F.logsigmoid(log_odds).mean()
    nll = nll_loss(chosen_logprobs, chosen_mask if nll_mask is None else nll_mask)
    metrics = _reward_metrics(beta * chosen_avg, beta * rejected_avg)
    metrics.update({"loss/nll": nll.detach(), "loss/or": odds_ratio_loss.detach(),
                    "log_odds_ratio": log_odds.detach().mean()})
    return nll + beta * odds_ratio_loss, metrics


def bradley_terry_loss(chosen_scores: Tensor, rejected_scores: Tensor,
                       margin: Tensor | None = None, center_coef: float | None = None
                       ) -> tuple[Tensor, Metrics]:
    """Pairwise reward-model loss (Ouyang et al. 2022, Eq. 1), with the Llama 2 margin
    (Touvron et al. 2023, Eq. 2) and reward centring (Eisenstein et al. 2023).

    loss = −log σ(r_w − r_l − m) + c · (r_w + r_l)², averaged over the batch; m = 0 and c = 0
    unless given. Centring pulls the mean reward towards zero without changing preferences.

    Shapes: chosen_scores, rejected_scores, margin (B,).  Returns: scalar, {accuracy, margin}.
    """
    diff = chosen_scores - rejected_scores
    if margin is not None:
        diff = diff - margin
    loss = -F.logsigmoid(diff).mean()
    if center_coef:
        loss = loss + center_coef * ((chosen_scores + rejected_scores) ** 2).mean()
    gap = (chosen_scores - rejected_scores).detach()
    return loss, {"accuracy": (gap > 0).float().mean(), "margin": gap.mean()}
