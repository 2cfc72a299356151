"""tests/reference_losses.py (the test oracle of the offline losses) against numbers worked out
by hand (in the comments) and a few properties.

The check that TRL's trainers compute these same losses is in tests/algos/test_losses_vs_trl.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from align.ppo.losses import masked_mean, masked_sum
from tests import reference_losses as losses

T = torch.tensor


def close(x, expected, tol=1e-6):
    return abs(float(x) - expected) < tol


def test_dpo_loss_hand_computed():
    # h = (-1 - -1.5) - (-2 - -1.5) = 1;  β h = 0.1;  -log σ(0.1) = log(1 + e^-0.1) = 0.6443967
    loss, m = losses.dpo_loss(T([-1.0]), T([-2.0]), T([-1.5]), T([-1.5]), beta=0.1)
    assert close(loss, 0.6443967)
    assert close(m["rewards/chosen"], 0.05) and close(m["rewards/rejected"], -0.05)
    assert close(m["rewards/margins"], 0.1) and close(m["rewards/accuracies"], 1.0)


def test_dpo_label_smoothing_is_conservative_dpo():
    # ε = 0.2: 0.8 · 0.6443967 + 0.2 · (-log σ(-0.1) = 0.7443967) = 0.6643967
    loss, _ = losses.dpo_loss(T([-1.0]), T([-2.0]), T([-1.5]), T([-1.5]), beta=0.1,
                              label_smoothing=0.2)
    assert close(loss, 0.6643967)


def test_robust_dpo_hand_computed():
    # (0.8 · 0.6443967 - 0.2 · 0.7443967) / (1 - 0.4) = 0.6110633
    loss, _ = losses.robust_dpo_loss(T([-1.0]), T([-2.0]), T([-1.5]), T([-1.5]), beta=0.1,
                                     label_smoothing=0.2)
    assert close(loss, 0.6110633)


def test_dpo_is_log2_when_policy_equals_reference():
    x = torch.randn(5)
    y = torch.randn(5)
    loss, _ = losses.dpo_loss(x, y, x, y, beta=0.37)
    assert close(loss, math.log(2))


def test_dpo_gradient_raises_chosen_and_lowers_rejected():
    chosen = torch.zeros(3, requires_grad=True)
    rejected = torch.zeros(3, requires_grad=True)
    loss, _ = losses.dpo_loss(chosen, rejected, torch.zeros(3), torch.zeros(3), beta=0.5)
    loss.backward()
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()


def test_ipo_is_length_normalised():
    # chosen: (-4 - -6) / 2 tokens = +1 per token; rejected: (-3 - -2) / 1 token = -1
    # h = 2; 1 / (2β) = 1 for β = 0.5; (2 - 1)² = 1.  Second pair: h = 0 -> (0 - 1)² = 1.
    loss, _ = losses.ipo_loss(T([-4.0, -1.0]), T([-3.0, -1.0]), T([-6.0, -1.0]), T([-2.0, -1.0]),
                              T([2.0, 3.0]), T([1.0, 3.0]), beta=0.5)
    assert close(loss, 1.0)
    # Without the division by lengths h would be 3 and the first loss (3 - 1)² = 4.
    loss_unnorm, _ = losses.ipo_loss(T([-4.0]), T([-3.0]), T([-6.0]), T([-2.0]), T([1.0]),
                                     T([1.0]), beta=0.5)
    assert close(loss_unnorm, 4.0)


def test_ld_logps_hand_computed_and_loop_reference():
    # Pair 1: chosen 2 tokens, rejected 4 (left-aligned, padding after): shared length 2.
    # chosen: -1 - 2 = -3 (no tail); rejected: (-1 - 1) + 0.5 · (-2 - 2) = -4.
    # Pair 2: chosen 3 tokens with a padded gap first, rejected 1: shared length 1.
    # chosen: -3 + 0.5 · (-1 - 1) = -4; rejected: -5.
    chosen_lp = T([[-1.0, -2.0, -9.0, -9.0], [0.0, -3.0, -1.0, -1.0]])
    chosen_mask = T([[1, 1, 0, 0], [0, 1, 1, 1]])
    rejected_lp = T([[-1.0, -1.0, -2.0, -2.0], [-5.0, -9.0, -9.0, -9.0]])
    rejected_mask = T([[1, 1, 1, 1], [1, 0, 0, 0]])
    c, r = losses.ld_logps(chosen_lp, chosen_mask, rejected_lp, rejected_mask, alpha=0.5)
    assert torch.allclose(c, T([-3.0, -4.0])) and torch.allclose(r, T([-4.0, -5.0]))

    def loop(lp, mask, shared, alpha):  # token by token
        total, seen = 0.0, 0
        for value, m in zip(lp.tolist(), mask.tolist()):
            if m:
                seen += 1
                total += value if seen <= shared else alpha * value
        return total

    torch.manual_seed(0)
    lp_c, lp_r = -torch.rand(3, 6), -torch.rand(3, 6)
    m_c = T([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0]])
    m_r = T([[1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    for alpha in (0.0, 0.3, 1.0):
        c, r = losses.ld_logps(lp_c, m_c, lp_r, m_r, alpha)
        for i in range(3):
            shared = min(int(m_c[i].sum()), int(m_r[i].sum()))
            assert close(c[i], loop(lp_c[i], m_c[i], shared, alpha), 1e-5)
            assert close(r[i], loop(lp_r[i], m_r[i], shared, alpha), 1e-5)
    # alpha = 1 is the plain summed log-probability
    c, r = losses.ld_logps(lp_c, m_c, lp_r, m_r, 1.0)
    assert torch.allclose(c, masked_sum(lp_c, m_c, dim=-1))
    assert torch.allclose(r, masked_sum(lp_r, m_r, dim=-1))
    with pytest.raises(ValueError, match="alpha"):
        losses.ld_logps(lp_c, m_c, lp_r, m_r, 1.5)


def test_nll_reductions_differ_on_unequal_lengths():
    logprobs = T([[-1.0, -3.0], [-4.0, 0.0]])
    mask = T([[1, 1], [1, 0]])
    # token: (1 + 3 + 4) / 3 = 8/3;  sequence: mean((1 + 3) / 2, 4 / 1) = 3
    assert close(losses.nll_loss(logprobs, mask, "token"), 8 / 3)
    assert close(losses.nll_loss(logprobs, mask, "sequence"), 3.0)
    with pytest.raises(ValueError, match="choose from"):
        losses.nll_loss(logprobs, mask, "mean")


def test_rpo_adds_alpha_times_nll():
    logprobs = T([[-1.0, -3.0], [-4.0, 0.0]])
    mask = T([[1, 1], [1, 0]])
    chosen, rejected, ref = T([-4.0, -4.0]), T([-5.0, -5.0]), T([-4.0, -4.0])
    dpo, _ = losses.dpo_loss(chosen, rejected, ref, ref, beta=0.1)
    # ref_rejected = -4: h = 0 - (-1) = 1 -> 0.6443967; + 0.5 · 8/3
    loss, m = losses.rpo_loss(chosen, rejected, ref, ref, logprobs, mask, beta=0.1, alpha=0.5)
    assert close(dpo, 0.6443967) and close(loss, 0.6443967 + 0.5 * 8 / 3)
    assert close(m["loss/nll"], 8 / 3)
    loss_seq, _ = losses.rpo_loss(chosen, rejected, ref, ref, logprobs, mask, beta=0.1,
                                  alpha=0.5, nll_reduction="sequence")
    assert close(loss_seq, 0.6443967 + 0.5 * 3.0)


def test_kto_hand_computed():
    # z0 = mean(-1 - -1.5) = 0.5; r = [1, -1]; β = 1
    # desirable: 1 - σ(1 - 0.5) = 0.3775407; undesirable: 1 - σ(0.5 - -1) = 0.1824255
    args = (T([-1.0, -2.0]), T([-2.0, -1.0]), T([True, False]), T([-1.0, -1.0]), T([-1.5, -1.5]))
    loss, m = losses.kto_loss(*args, beta=1.0)
    assert close(loss, 0.2799831) and close(m["kl"], 0.5)
    assert close(m["rewards/chosen"], 1.0) and close(m["rewards/rejected"], -1.0)
    # λ_D = 2 doubles the desirable term: (0.7550815 + 0.1824255) / 2
    loss_w, _ = losses.kto_loss(*args, beta=1.0, desirable_weight=2.0)
    assert close(loss_w, 0.4687534)


def test_kto_kl_estimate_is_clamped_at_zero():
    loss, m = losses.kto_loss(T([0.0]), T([0.0]), T([True]), T([-3.0]), T([-1.0]), beta=1.0)
    assert close(m["kl"], 0.0) and close(loss, 0.5)  # 1 - σ(0)


def test_cpo_hand_computed():
    # log π(y_w) = -2, log π(y_l) = -3 (second token masked); -log σ(0.1 · 1) = 0.6443967
    # NLL over chosen tokens: (1 + 1) / 2 = 1; α = 1
    cl, cm = T([[-1.0, -1.0]]), T([[1, 1]])
    rl, rm = T([[-3.0, -7.0]]), T([[1, 0]])
    loss, m = losses.cpo_loss(cl, cm, rl, rm, beta=0.1, alpha=1.0)
    assert close(loss, 1.6443967) and close(m["loss/nll"], 1.0)
    loss0, _ = losses.cpo_loss(cl, cm, rl, rm, beta=0.1, alpha=0.0)
    assert close(loss0, 0.6443967)


def test_simpo_hand_computed():
    # mean log-probs: chosen -1, rejected -3; β (−1 − −3) − γ = 2·2 − 1 = 3; -log σ(3) = 0.0485874
    cl, cm = T([[-1.0, -1.0, -9.0]]), T([[1, 1, 0]])
    rl, rm = T([[-2.0, -4.0, -3.0]]), T([[1, 1, 1]])
    loss, _ = losses.simpo_loss(cl, cm, rl, rm, beta=2.0, gamma=1.0)
    assert close(loss, 0.0485874)
    # With α = 1 the chosen NLL (mean 1.0) is added.
    loss_a, _ = losses.simpo_loss(cl, cm, rl, rm, beta=2.0, gamma=1.0, alpha=1.0)
    assert close(loss_a, 1.0485874)


def test_orpo_hand_computed():
    # chosen tokens log 0.5 -> P = 0.5, odds 1; rejected log 0.25 -> odds 1/3
    # log odds ratio = log 3; L_OR = -log σ(log 3) = log(4/3) = 0.2876821; NLL = log 2
    half, quarter = math.log(0.5), math.log(0.25)
    cl, cm = T([[half, half]]), T([[1, 1]])
    rl, rm = T([[quarter, quarter]]), T([[1, 1]])
    loss, m = losses.orpo_loss(cl, cm, rl, rm, beta=0.1)
    assert close(loss, math.log(2) + 0.1 * 0.2876821)
    assert close(m["log_odds_ratio"], math.log(3)) and close(m["loss/or"], 0.2876821)


def test_orpo_nll_mask_override():
    cl = T([[-2.0, -1.0, -1.0]])
    answer, whole = T([[0, 1, 1]]), T([[1, 1, 1]])
    _, m = losses.orpo_loss(cl, answer, cl, answer, beta=0.1)
    _, m_whole = losses.orpo_loss(cl, answer, cl, answer, beta=0.1, nll_mask=whole)
    assert close(m["loss/nll"], 1.0) and close(m_whole["loss/nll"], 4 / 3)


def test_bradley_terry_hand_computed():
    # diffs [1, -1]: (0.3132617 + 1.3132617) / 2 = 0.8132617
    loss, m = losses.bradley_terry_loss(T([2.0, 0.0]), T([1.0, 1.0]))
    assert close(loss, 0.8132617) and close(m["accuracy"], 0.5)
    # margin [0.5, 0]: (-log σ(0.5) = 0.4740770 + 1.3132617) / 2
    loss_m, _ = losses.bradley_terry_loss(T([2.0, 0.0]), T([1.0, 1.0]), margin=T([0.5, 0.0]))
    assert close(loss_m, 0.8936694)
    # centring 0.1 · mean((3)², (1)²) = 0.5
    loss_c, _ = losses.bradley_terry_loss(T([2.0, 0.0]), T([1.0, 1.0]), center_coef=0.1)
    assert close(loss_c, 0.8132617 + 0.5)


def test_empty_mask_gives_no_nan():
    logprobs = torch.randn(2, 3)
    mask = torch.zeros(2, 3)
    assert torch.isfinite(losses.nll_loss(logprobs, mask))
    assert torch.isfinite(masked_mean(logprobs, mask, dim=-1)).all()
