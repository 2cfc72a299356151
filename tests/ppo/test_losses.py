"""align/ppo/losses.py against hand-worked numbers and plain reference loops."""

from __future__ import annotations

import math

import pytest
import torch

from align.ppo.losses import (SUM_BLOCK, clip_advantages, entropy_from_logits,
                              explained_variance, fixed_order_sum, gae, gather_logprobs,
                              kl_penalty, masked_mean, masked_sum, masked_var, masked_whiten,
                              policy_loss, token_rewards, value_loss)

MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)


def test_masked_mean_and_var_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, -7.0, 9.0]])
    m = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    # counted: 1, 2, 3, 4 -> mean 2.5, sum of squares 5 -> var 5/3 (unbiased)
    assert masked_sum(x, m) == pytest.approx(10.0)
    assert masked_mean(x, m) == pytest.approx(2.5)
    assert masked_var(x, m) == pytest.approx(5 / 3)
    assert masked_mean(x, m, dim=1).tolist() == pytest.approx([2.0, 4.0])


def test_fixed_order_sum_is_the_sum_and_the_same_at_any_thread_count():
    # sizes below one block, whole blocks, blocks plus a tail
    sizes = (1000, 2 * SUM_BLOCK, 3 * SUM_BLOCK + 123, 40 * SUM_BLOCK + 7)
    threads = torch.get_num_threads()
    try:
        for n in sizes:
            x = torch.randn(n, generator=torch.Generator().manual_seed(n)) + 0.1
            reference = math.fsum(x.double().tolist())  # exact sum of the float32 values
            sums = []
            for k in (1, 2, 3):
                torch.set_num_threads(k)
                sums.append(fixed_order_sum(x.view(-1, 1) if n % 2 else x).item())
            assert sums[0] == sums[1] == sums[2], (n, sums)
            assert sums[0] == pytest.approx(reference, rel=1e-5, abs=1e-3)
    finally:
        torch.set_num_threads(threads)
    small = torch.randn(3, 7)
    assert fixed_order_sum(small).item() == small.sum().item()  # one block: torch's own sum


def test_fixed_order_sum_sums_the_block_sums_in_blocks_again(monkeypatch):
    import align.ppo.losses as losses

    monkeypatch.setattr(losses, "SUM_BLOCK", 4)
    x = torch.arange(1.0, 40.0)  # 39 = 9 blocks of 4 + a tail of 3; 10 sums -> 2 blocks + 2
    assert losses.fixed_order_sum(x).item() == 39 * 40 / 2
    assert losses.fixed_order_sum(x.view(3, 13)).item() == 780.0


def test_masked_mean_over_a_large_batch_is_the_same_at_any_thread_count():
    x = torch.randn(64, 1500, generator=torch.Generator().manual_seed(0)) + 0.5
    mask = torch.rand(64, 1500, generator=torch.Generator().manual_seed(1)) > 0.1
    threads = torch.get_num_threads()
    try:
        means = []
        for k in (1, 2):
            torch.set_num_threads(k)
            means.append((masked_mean(x, mask).item(), masked_var(x, mask).item()))
    finally:
        torch.set_num_threads(threads)
    assert means[0] == means[1]
    assert means[0][0] == pytest.approx(x[mask].double().mean().item(), rel=1e-5)


def test_masked_mean_of_nothing_is_zero_not_nan():
    x = torch.randn(2, 3)
    none = torch.zeros(2, 3, dtype=torch.bool)
    assert masked_mean(x, none).item() == 0.0
    assert masked_var(x, none).item() == 0.0
    assert not torch.isnan(masked_whiten(x, none)).any()


def test_masked_whiten_ignores_padding():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 1e6, -1e6]])
    w = masked_whiten(x, MASK)
    assert masked_mean(w, MASK).item() == pytest.approx(0.0, abs=1e-6)
    assert masked_var(w, MASK).item() == pytest.approx(1.0, abs=1e-5)
    assert w[1, 2:].tolist() == [0.0, 0.0]
    kept = masked_whiten(x, MASK, shift_mean=False)
    assert masked_mean(kept, MASK).item() == pytest.approx(masked_mean(x, MASK).item(), rel=1e-5)


def test_gather_logprobs_and_entropy():
    logits = torch.tensor([[[0.0, math.log(3.0)], [5.0, 5.0]]])  # probs (1/4, 3/4), (1/2, 1/2)
    lp = gather_logprobs(logits, torch.tensor([[1, 0]]))
    assert lp.tolist()[0] == pytest.approx([math.log(0.75), math.log(0.5)])
    ent = entropy_from_logits(logits)[0]
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert ent.tolist() == pytest.approx([h, math.log(2.0)], rel=1e-5)


def test_kl_estimators_by_hand():
    # π(a) = 0.5, π_ref(a) = 0.25: log r = log(0.5) = -0.6931
    lp, ref = torch.tensor([[math.log(0.5)]]), torch.tensor([[math.log(0.25)]])
    assert kl_penalty(lp, ref, "k1").item() == pytest.approx(0.693147, rel=1e-5)
    assert kl_penalty(lp, ref, "k2").item() == pytest.approx(0.5 * 0.693147 ** 2, rel=1e-5)
    assert kl_penalty(lp, ref, "k3").item() == pytest.approx(-0.5 + 0.693147, rel=1e-5)
    with pytest.raises(ValueError, match="k1, k2, k3"):
        kl_penalty(lp, ref, "k4")


def test_kl_estimators_are_unbiased_on_samples():
    """k1 and k3 average to KL(π || π_ref) over samples a ~ π (Schulman 2020); k3 >= 0."""
    g = torch.Generator().manual_seed(0)
    p, q = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.3, 0.5])
    true_kl = (p * (p / q).log()).sum().item()
    a = torch.multinomial(p, 200_000, replacement=True, generator=g)
    lp, ref = p.log()[a][None], q.log()[a][None]
    assert kl_penalty(lp, ref, "k1").mean().item() == pytest.approx(true_kl, abs=0.01)
    k3 = kl_penalty(lp, ref, "k3")
    assert k3.mean().item() == pytest.approx(true_kl, abs=0.01) and (k3 >= 0).all()


def test_token_rewards_by_hand():
    scores = torch.tensor([1.0, 2.0])
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    r = token_rewards(scores, kl, mask, kl_coef=0.5)
    assert r.tolist()[0] == pytest.approx([-0.05, -0.1, -0.15 + 1.0])
    assert r.tolist()[1] == pytest.approx([-0.2, -0.25 + 2.0, 0.0])


def test_gae_by_hand_monte_carlo_case():
    # γ = λ = 1: A_t = Σ future rewards - V_t, so returns = A + V = 1 everywhere.
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.2, 0.8]])
    adv, ret = gae(rewards, values, torch.ones(1, 3, dtype=torch.bool), 1.0, 1.0)
    assert adv.tolist()[0] == pytest.approx([0.5, 0.8, 0.2])
    assert ret.tolist()[0] == pytest.approx([1.0, 1.0, 1.0])


def test_gae_by_hand_discounted():
    # γ = 0.9, λ = 0.5, two tokens: δ1 = 1 - 0.4 = 0.6; δ0 = 0 + 0.9*0.4 - 0.3 = 0.06
    # A1 = 0.6; A0 = 0.06 + 0.45 * 0.6 = 0.33
    adv, ret = gae(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.3, 0.4]]),
                   torch.ones(1, 2, dtype=torch.bool), 0.9, 0.5)
    assert adv.tolist()[0] == pytest.approx([0.33, 0.6])
    assert ret.tolist()[0] == pytest.approx([0.63, 1.0])


def _gae_loop(rewards, values, gamma, lam):
    """The textbook per-sequence loop (Schulman et al. 2016) on one unpadded response."""
    advantages, last = [0.0] * len(rewards), 0.0
    for t in reversed(range(len(rewards))):
        next_value = values[t + 1] if t + 1 < len(rewards) else 0.0
        delta = rewards[t] + gamma * next_value - values[t]
        last = delta + gamma * lam * last
        advantages[t] = last
    return advantages, [a + v for a, v in zip(advantages, values)]


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.99, 1.0), (0.9, 0.0)])
def test_gae_matches_plain_loop_with_padding(gamma, lam):
    g = torch.Generator().manual_seed(1)
    lengths = [7, 1, 4, 0, 5]
    B, T = len(lengths), 7
    mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]
    # garbage in the padding must not leak into the real tokens
    rewards = torch.randn(B, T, generator=g)
    values = torch.randn(B, T, generator=g)
    adv, ret = gae(rewards, values, mask, gamma, lam)
    for b, n in enumerate(lengths):
        ref_adv, ref_ret = _gae_loop(rewards[b, :n].tolist(), values[b, :n].tolist(), gamma, lam)
        assert adv[b, :n].tolist() == pytest.approx(ref_adv, abs=1e-5)
        assert ret[b, :n].tolist() == pytest.approx(ref_ret, abs=1e-5)
        assert adv[b, n:].abs().sum() == 0 and ret[b, n:].abs().sum() == 0


def test_policy_loss_ratio_one_is_minus_mean_advantage():
    lp = torch.randn(2, 4)
    adv = torch.randn(2, 4)
    loss, m = policy_loss(lp, lp.clone(), adv, MASK)
    assert loss.item() == pytest.approx(-masked_mean(adv, MASK).item(), abs=1e-6)
    assert m["clipfrac"].item() == 0.0 and m["approx_kl"].item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("ratio,adv,expected,clipped", [
    (1.5, 1.0, -1.2, 1.0),   # A > 0, ratio above 1+ε: clipped at 1.2
    (0.5, 1.0, -0.5, 0.0),   # A > 0, ratio below: the unclipped (smaller) objective counts
    (0.5, -1.0, 0.8, 1.0),   # A < 0, ratio below 1-ε: clipped at 0.8
    (1.5, -1.0, 1.5, 0.0),   # A < 0, ratio above: unclipped, no dual clip
])
def test_policy_loss_by_hand(ratio, adv, expected, clipped):
    lp = torch.tensor([[math.log(ratio)]], requires_grad=True)
    loss, m = policy_loss(lp, torch.zeros(1, 1), torch.tensor([[adv]]),
                          torch.ones(1, 1, dtype=torch.bool), clip_low=0.2, clip_high=0.2)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert m["clipfrac"].item() == clipped
    loss.backward()
    # where the clipped branch wins, no gradient flows (the point of clipping)
    assert (lp.grad.abs().item() == 0.0) == bool(clipped)
    # approx_kl is k3 of KL(π_old || π): (ρ - 1) - log ρ
    assert m["approx_kl"].item() == pytest.approx(ratio - 1 - math.log(ratio), rel=1e-5)


def test_dual_clip_bounds_negative_advantage_loss():
    # ratio 5, A = -1: plain PPO loss max(5, 1.2) = 5; dual clip c = 3 caps it at 3
    lp, old = torch.tensor([[math.log(5.0), math.log(5.0)]]), torch.zeros(1, 2)
    adv, mask = torch.tensor([[-1.0, 1.0]]), torch.tensor([[True, False]])
    plain, _ = policy_loss(lp, old, adv, mask)
    dual, _ = policy_loss(lp, old, adv, mask, dual_clip=3.0)
    assert plain.item() == pytest.approx(5.0) and dual.item() == pytest.approx(3.0)
    # positive advantages are untouched by the dual clip
    pos, _ = policy_loss(lp, old, -adv, mask, dual_clip=3.0)
    assert pos.item() == pytest.approx(-1.2)


def test_policy_loss_all_masked_is_zero_without_nan():
    lp = torch.randn(2, 3, requires_grad=True)
    loss, m = policy_loss(lp, torch.randn(2, 3), torch.randn(2, 3),
                          torch.zeros(2, 3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and not torch.isnan(lp.grad).any()
    assert all(not torch.isnan(v) for v in m.values())


@pytest.mark.parametrize("value,old,ret,clip,expected,clipfrac", [
    (2.0, 1.0, 0.0, 0.2, 0.5 * 4.0, 0.0),     # (2-0)^2=4 vs (1.2-0)^2=1.44 -> 4
    (0.5, 1.0, 2.0, 0.2, 0.5 * 2.25, 0.0),    # (0.5-2)^2=2.25 vs (0.8-2)^2=1.44 -> 2.25
    (1.5, 1.0, 1.6, 0.2, 0.5 * 0.16, 1.0),    # (1.5-1.6)^2=0.01 vs (1.2-1.6)^2=0.16 -> 0.16
    (1.5, 1.0, 1.6, None, 0.5 * 0.01, 0.0),   # no clip: plain ½ MSE
])
def test_value_loss_by_hand(value, old, ret, clip, expected, clipfrac):
    t = lambda x: torch.tensor([[x]])  # noqa: E731
    loss, m = value_loss(t(value), t(old), t(ret), torch.ones(1, 1, dtype=torch.bool), clip=clip)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert m["clipfrac"].item() == clipfrac


def test_explained_variance():
    ret = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 0.0, 0.0]])
    assert explained_variance(ret, ret, MASK).item() == pytest.approx(1.0)
    mean = torch.full_like(ret, masked_mean(ret, MASK).item())
    assert explained_variance(mean, ret, MASK).item() == pytest.approx(0.0, abs=1e-6)
    assert explained_variance(ret, torch.ones_like(ret), MASK).item() == 0.0


def test_clip_advantages():
    assert clip_advantages(torch.tensor([-3.0, 0.25, 9.0]), 0.5).tolist() == [-0.5, 0.25, 0.5]
