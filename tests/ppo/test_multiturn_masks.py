"""Multi-turn PPO masks, by hand: in a two-turn episode (the model calls a tool, the
environment answers, the model answers) the tokens the environment wrote get no policy loss,
no value loss, no KL, no advantage and no entropy, and GAE over the model's tokens is one
trajectory, equal to the loop written out below."""

from __future__ import annotations

import pytest
import torch

from align.ppo.losses import (entropy_from_logits, gae, kl_penalty, masked_mean, masked_whiten,
                              policy_loss, token_rewards, value_loss)
from align.ppo.rollout import Experience, pack_episodes

PAD = 0
# row 0, two turns: the model's call (3 tokens), the tool's result (2 tokens the environment
# wrote), the model's answer (2 tokens, the last its EOS). Row 1, one turn of 4 tokens.
EPISODES = ([[11, 12, 13, 21, 22, 14, 2], [15, 16, 17, 2]],  # as align.agents.loop.Episode
            [[1, 1, 1, 0, 0, 1, 1], [1, 1, 1, 1]])          # completion_ids and mask hold them
SAMPLED = [[1, 1, 1, 0, 0, 1, 1], [1, 1, 1, 1, 0, 0, 0]]
ENV = [[0, 0, 0, 1, 1, 0, 0], [0] * 7]


def test_pack_episodes_marks_sampled_and_environment_tokens():
    ids, mask, env = pack_episodes(*EPISODES, PAD)
    assert ids.tolist() == [[11, 12, 13, 21, 22, 14, 2], [15, 16, 17, 2, PAD, PAD, PAD]]
    assert mask.long().tolist() == SAMPLED and env.long().tolist() == ENV


def episode():
    ids, mask, env = pack_episodes(*EPISODES, PAD)
    g = torch.Generator().manual_seed(0)
    values = torch.randn(2, 7, generator=g)
    logprobs = -torch.rand(2, 7, generator=g)
    ref_logprobs = -torch.rand(2, 7, generator=g)
    return ids, mask, env, values, logprobs, ref_logprobs


def hand_gae(rewards: list[float], values: list[float], gamma: float, lam: float) -> list[float]:
    """GAE over one trajectory, the slow obvious way: A_t = Σ_l (γλ)^l δ_{t+l}."""
    n = len(rewards)
    deltas = [rewards[t] + gamma * (values[t + 1] if t + 1 < n else 0.0) - values[t]
              for t in range(n)]
    return [sum((gamma * lam) ** (k - t) * deltas[k] for k in range(t, n)) for t in range(n)]


def test_environment_tokens_get_no_kl_and_the_score_lands_on_the_last_sampled_token():
    ids, mask, env, values, logprobs, ref_logprobs = episode()
    kl = kl_penalty(logprobs, ref_logprobs, "k1")
    rewards = token_rewards(torch.tensor([1.5, -0.5]), kl, mask, kl_coef=0.1)
    assert (rewards[env] == 0).all()
    # row 0: -β·KL on tokens 0, 1, 2, 5, and the score on token 6 (its EOS), after the tool turn
    for t in (0, 1, 2, 5):
        assert rewards[0, t].item() == pytest.approx(-0.1 * kl[0, t].item())
    assert rewards[0, 6].item() == pytest.approx(1.5 - 0.1 * kl[0, 6].item())
    assert rewards[1, 3].item() == pytest.approx(-0.5 - 0.1 * kl[1, 3].item())
    assert (rewards[1, 4:] == 0).all()


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.8), (1.0, 1.0)])
def test_gae_runs_over_the_model_tokens_as_one_trajectory(gamma, lam):
    ids, mask, env, values, logprobs, ref_logprobs = episode()
    rewards = token_rewards(torch.tensor([1.5, -0.5]),
                            kl_penalty(logprobs, ref_logprobs, "k1"), mask, 0.1)
    advantages, returns = gae(rewards, values, mask, gamma, lam)
    assert (advantages[env] == 0).all() and (returns[env] == 0).all()
    assert (advantages[~(mask | env)] == 0).all()  # padding
    for row in range(2):
        cols = [t for t in range(7) if mask[row, t]]  # the model's tokens, tool turn skipped
        want = hand_gae([rewards[row, t].item() for t in cols],
                        [values[row, t].item() for t in cols], gamma, lam)
        assert advantages[row, cols].tolist() == pytest.approx(want, abs=1e-6)
        assert returns[row, cols].tolist() == pytest.approx(
            [a + values[row, t].item() for a, t in zip(want, cols)], abs=1e-6)
    # δ of the call's last token (2) uses V of the answer's first token (5), not of a tool token
    d2 = rewards[0, 2] + gamma * values[0, 5] - values[0, 2]
    assert (advantages[0, 2] - gamma * lam * advantages[0, 5]).item() == pytest.approx(
        d2.item(), abs=1e-6)


def test_environment_tokens_get_no_policy_value_or_entropy_gradient():
    ids, mask, env, values, logprobs, ref_logprobs = episode()
    advantages = torch.randn(2, 7)  # nonzero everywhere: the mask alone must drop env tokens
    new_logprobs = (logprobs + 0.05 * torch.randn(2, 7)).requires_grad_(True)
    loss, _ = policy_loss(new_logprobs, logprobs, advantages, mask)
    loss.backward()
    assert (new_logprobs.grad[env] == 0).all() and (new_logprobs.grad[mask] != 0).all()
    new_values = (values + 0.1).requires_grad_(True)  # inside the clip range
    vloss, _ = value_loss(new_values, values, torch.randn(2, 7), mask, clip=0.2)
    vloss.backward()
    assert (new_values.grad[env] == 0).all() and (new_values.grad[mask] != 0).all()
    logits = torch.randn(2, 7, 5, requires_grad=True)
    masked_mean(entropy_from_logits(logits), mask).backward()
    assert (logits.grad[env] == 0).all()
    # what the environment's tokens hold changes none of the losses
    garbage = torch.where(env, torch.full_like(logprobs, -50.0), new_logprobs.detach())
    again, _ = policy_loss(garbage, logprobs, advantages, mask)
    assert again.item() == pytest.approx(loss.item())
    whitened = masked_whiten(advantages, mask)
    assert (whitened[env] == 0).all()


def test_the_update_trains_on_sampled_tokens_and_reads_the_environment_ones():
    """Through align.ppo.update on a hand-built Experience: advantages and returns are zero on
    the environment's tokens, which the forward passes still attend to."""
    from align.ppo.config import PPOConfig
    from align.ppo.reward_norm import RunningMoments
    from align.ppo.update import compute_advantages, compute_rewards

    ids, mask, env, values, logprobs, ref_logprobs = episode()
    exp = Experience(prompt_ids=torch.tensor([[5, 6], [PAD, 7]]),
                     prompt_mask=torch.tensor([[True, True], [False, True]]),
                     response_ids=ids, mask=mask, ended=torch.tensor([True, True]),
                     logprobs=logprobs, ref_logprobs=ref_logprobs, values=values,
                     scores=torch.tensor([1.0, 0.0]), entropy=torch.rand(2, 7), env_mask=env)
    a = PPOConfig(reward_funcs="length", length_target=3)
    rewards, metrics = compute_rewards(a, exp, 0.05, RunningMoments())
    assert (rewards[env] == 0).all()
    kl = kl_penalty(logprobs, ref_logprobs, "k1")
    per_episode = [sum(kl[r, t].item() for t in range(7) if mask[r, t]) for r in range(2)]
    assert metrics["objective/kl"] == pytest.approx(sum(per_episode) / 2, abs=1e-6)
    advantages, returns, _ = compute_advantages(a, exp, rewards)
    assert (advantages[env] == 0).all() and (returns[env] == 0).all()
    input_ids, attention, positions = exp.sequences()
    assert attention[0].tolist() == [1, 1, 1, 1, 1, 1, 1, 1, 1]  # the tool's result is read
    assert positions[1].tolist() == [0, 0, 1, 2, 3, 4, 4, 4, 4]
    half = exp.select(torch.tensor([0]))
    assert half.env_mask.tolist() == [env[0].tolist()]
