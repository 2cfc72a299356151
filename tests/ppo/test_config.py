"""PPOConfig presets and validation, the KL controller, running reward statistics, sampler."""

from __future__ import annotations

import json

import statistics

import pytest

from align.ppo.config import PPOConfig, preset_values
from align.ppo.data import Sampler
from align.ppo.kl_control import KLController
from align.ppo.reward_norm import RunningMoments
from tests.conftest import run_cli, write_jsonl


def test_default_preset_is_the_ms_swift_guide_but_for_lam():
    c = PPOConfig()
    # λ 1 (the guide's 0.95 before) was chosen on SmolLM2 (docs/ppo.md)
    # β is left to the size band (align.ppo.plan.kl_coef: 0.05, the guide's, or 0.15 below 1B)
    assert (c.kl_coef, c.cliprange, c.cliprange_value, c.vf_coef, c.gamma, c.lam) == \
        (None, 0.2, 0.2, 0.1, 1.0, 1.0)
    assert c.whiten_rewards is False and c.reward_norm is False and c.whiten_advantages is True
    assert c.ptx_coef == 0.0


@pytest.mark.parametrize("preset", ["ppo-max", "vanilla"])
def test_preset_sets_its_fields(preset):
    c = PPOConfig(preset=preset)
    for name, value in preset_values(preset).items():
        assert getattr(c, name) == value


def test_flag_passed_by_the_user_beats_the_preset():
    c = PPOConfig(preset="vanilla", kl_coef=0.1, whiten_advantages=True)
    assert c.kl_coef == 0.1 and c.whiten_advantages is True and c.reward_norm is False
    c = PPOConfig(preset="ppo-max", reward_norm=False, reward_clip=0.0)
    assert c.reward_norm is False and c.reward_clip == 0.0 and c.cliprange_value == 0.2


def test_ptx_coef_defaults_only_with_a_dataset():
    assert PPOConfig(ptx_dataset="sft.jsonl").ptx_coef == 0.05
    with pytest.raises(ValueError, match="--ptx-coef needs --ptx-dataset"):
        PPOConfig(ptx_coef=0.1)


@pytest.mark.parametrize("kwargs,message", [
    ({"rollout_batch_size": 10, "num_mini_batches": 3}, "divisible"),
    ({"dual_clip": 0.5}, r"--dual-clip must be 0 or in \(1, inf\), got 0.5"),
    ({"dual_clip": 1.0}, "--dual-clip must be 0 or in"),
    ({"kl_estimator": "k9"}, "choose from"),
    ({"preset": "max"}, "choose from"),
    ({"temperature": 0.0}, "--temperature"),
    ({"target_kl": 6.0, "kl_coef": 0.0}, "--target-kl"),
    ({"cliprange": -0.1}, r"--cliprange must be in \[0, inf\)"),
    ({"rollout_generate_batch_size": 0}, r"--rollout-generate-batch-size must be in \[1, inf\)"),
    ({"ppo_epochs": 0}, r"--ppo-epochs must be in \[1, inf\)"),
    ({"top_p": 0.0}, r"--top-p must be in \(0, 1\]"),
    ({"gamma": 1.5}, r"--gamma must be in \[0, 1\]"),
    ({"actor_lr": 0.0}, r"--actor-lr must be in \(0, inf\)"),
    ({"target_kl": -1.0}, r"--target-kl must be in \[0, inf\)"),
    ({"rollout_engine": "vllm"}, "not implemented for PPO yet"),
])
def test_invalid_values_name_the_flag(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PPOConfig(**kwargs)


def test_preset_resolution_through_the_cli(capsys, tiny_lm, tiny_rm, tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "hi"}])
    code, out, err = run_cli(["rlhf", "--algo", "ppo", "--model", tiny_lm, "--reward-model",
                              tiny_rm, "--dataset", prompts, "--preset", "vanilla",
                              "--cliprange-value", "0.3", "--dry-run"], capsys)
    assert code == 0, err
    assert "kl_coef: 0.0" in out and "cliprange_value: 0.3" in out
    assert "critic: a trainable copy of" in out


def test_kl_controller_follows_ziegler():
    fixed = KLController(0.05)
    fixed.update(100.0, 64)
    assert fixed.value == 0.05
    ctl = KLController(0.1, target=6.0, horizon=1000)
    ctl.update(12.0, 100)  # error clipped to +0.2: β *= 1 + 0.2 * 100 / 1000
    assert ctl.value == pytest.approx(0.1 * 1.02)
    ctl.update(5.4, 100)  # error -0.1: β *= 1 - 0.01
    assert ctl.value == pytest.approx(0.1 * 1.02 * 0.99)
    again = KLController(0.1, target=6.0, horizon=1000)
    again.load_state_dict(ctl.state_dict())
    assert again.value == ctl.value


def test_running_moments_match_the_whole_sample():
    batches = [[1.0, 2.0, 3.0], [10.0], [-4.0, 0.5, 7.0, 2.0]]
    stats = RunningMoments()
    for b in batches:
        stats.update(b)
    flat = [x for b in batches for x in b]
    assert stats.mean == pytest.approx(statistics.fmean(flat))
    assert stats.std == pytest.approx(statistics.pstdev(flat))
    assert stats.normalize(stats.mean) == pytest.approx(0.0)
    copy = RunningMoments()
    copy.load_state_dict(stats.state_dict())
    assert (copy.mean, copy.std, copy.count) == (stats.mean, stats.std, stats.count)


def test_sampler_covers_each_epoch_and_resumes():
    s = Sampler(5, 3, seed=0)
    first = s.next() + s.next()[:2]  # epoch 0 ends inside the second batch
    assert sorted(first) == list(range(5))
    state = s.state_dict()
    rest = [s.next() for _ in range(3)]
    t = Sampler(5, 3, seed=0)
    t.load_state_dict(state)
    assert [t.next() for _ in range(3)] == rest


@pytest.mark.parametrize("flags,world,message", [
    ({"rollout_batch_size": 6}, 4, "divisible by the 4 processes"),
    ({"rollout_batch_size": 8, "num_mini_batches": 4}, 4, "divisible by the 4 processes"),
    ({"gradient_accumulation_steps": 2}, 1, "--gradient-accumulation-steps is not used"),
    ({"learning_rate": 1e-5, "actor_lr": 2e-5}, 1, "not both"),
    ({"lora": True, "offload_ref_model": True}, 1, "no separate copy"),
    ({"lora": True, "critic_base": "reward-model", "offload_reward_model": True}, 1,
     "no separate copy"),
    ({"lora": True, "critic_base": "policy", "value_model": "v"}, 1, "choose one"),
    ({"max_length": 64, "max_new_tokens": 64}, 1, "leaves no room"),
    ({"use_liger_kernel": True}, 1, "--use-liger-kernel applies to the TRL-backed"),
])
def test_unsupported_combinations_are_refused(tmp_path, flags, world, message):
    from align.errors import AlignError
    from align.ppo.plan import check_supported
    from tests.ppo.conftest import ppo_config

    with pytest.raises(AlignError, match=message):
        check_supported(ppo_config("m", "rm", tmp_path, **flags), world)


@pytest.mark.parametrize("stage,world,refused", [(3, 2, True), (3, 1, False), (2, 2, False)])
def test_tools_under_zero3_over_several_processes_are_refused(tmp_path, stage, world, refused):
    """Each process's episodes take their own number of turns (generate calls); ZeRO-3 needs
    every process in every forward pass, so the processes would wait on each other."""
    import json

    from align.errors import AlignError
    from align.ppo.plan import check_supported
    from tests.ppo.conftest import DOUBLE_TOOL, ppo_config

    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": stage}}))
    cfg = ppo_config("m", None, tmp_path, reward_funcs="accuracy", deepspeed=str(ds),
                     tools=f"{DOUBLE_TOOL}:double")
    if refused:
        with pytest.raises(AlignError, match="ZeRO-3 over several processes"):
            check_supported(cfg, world)
    else:
        check_supported(cfg, world)


def test_offloading_the_reward_model_is_allowed_on_the_shared_lora_base(tmp_path):
    from align.ppo.plan import check_supported, critic_base
    from tests.ppo.conftest import ppo_config

    cfg = ppo_config("m", "rm", tmp_path, lora=True, offload_reward_model=True)
    check_supported(cfg, 2)
    assert critic_base(cfg) == "policy"
    assert critic_base(ppo_config("m", "rm", tmp_path)) == "own"
    assert critic_base(ppo_config("m", "rm", tmp_path, lora=True, value_model="v")) == "own"


def test_learning_rate_defaults_follow_the_policys_size(tmp_path):
    from align.ppo.plan import describe, kl_coef, learning_rates, model_params
    from tests.ppo.conftest import ppo_config

    def model(name, hidden, layers, vocab=49152, inter=None):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({
            "hidden_size": hidden, "num_hidden_layers": layers, "vocab_size": vocab,
            "intermediate_size": inter or 4 * hidden, "num_attention_heads": 8,
            "num_key_value_heads": 8, "tie_word_embeddings": True}))
        return d

    small = model("small", 576, 30, inter=1536)  # SmolLM2-135M's shape
    assert model_params(str(small)) == pytest.approx(135e6, rel=0.1)
    big = model("big", 4096, 32, vocab=32000, inter=11008)  # a Llama-2-7B-like shape
    assert model_params(str(big)) == pytest.approx(6.7e9, rel=0.1)
    # below 1B, full fine-tuning: 3e-5 with β 0.15 (SmolLM2, docs/ppo.md H and I)
    assert learning_rates(ppo_config(small, "rm", tmp_path)) == (3e-5, 2e-5)
    assert kl_coef(ppo_config(small, "rm", tmp_path)) == 0.15
    # LoRA below 1B: the actor's 1e-4 measured on SmolLM2, the critic 10x, the guide's β
    assert learning_rates(ppo_config(small, "rm", tmp_path, lora=True)) == \
        pytest.approx((1e-4, 2e-4))
    assert kl_coef(ppo_config(small, "rm", tmp_path, lora=True)) == 0.05
    # a β given, or a preset's, wins; the larger bands keep the guide's
    assert kl_coef(ppo_config(small, "rm", tmp_path, kl_coef=0.05)) == 0.05
    assert kl_coef(ppo_config(small, "rm", tmp_path, preset="vanilla")) == 0.0
    assert kl_coef(ppo_config(big, "rm", tmp_path)) == 0.05
    assert "actor lr 3e-05, critic lr 2e-05" in describe(ppo_config(small, "rm", tmp_path), 8)
    assert describe(ppo_config(small, "rm", tmp_path), 8).endswith("; KL β 0.15")
    assert learning_rates(ppo_config(big, "rm", tmp_path)) == (5e-7, 9e-6)
    # no config.json (a hub id, a .gguf file): the 7B-class rates
    assert learning_rates(ppo_config("org/model", "rm", tmp_path)) == (5e-7, 9e-6)
    assert learning_rates(ppo_config(big, "rm", tmp_path, lora=True)) == \
        pytest.approx((5e-6, 9e-5))
    assert learning_rates(ppo_config(big, "rm", tmp_path, learning_rate=1e-4))[0] == 1e-4
    assert learning_rates(ppo_config(big, "rm", tmp_path, actor_lr=2e-6, critic_lr=3e-6)) == \
        (2e-6, 3e-6)


def test_lr_factor_matches_transformers_schedules():
    import torch
    from transformers import get_scheduler

    from align.ppo.plan import lr_factor

    for kind in ("linear", "cosine", "constant", "constant_with_warmup"):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = get_scheduler(kind, opt, num_warmup_steps=3, num_training_steps=20)
        for update in range(25):
            assert lr_factor(kind, update, 3, 20) == pytest.approx(opt.param_groups[0]["lr"]), \
                (kind, update)
            opt.step()
            sched.step()


def test_missing_eos_penalty_defaults_to_5_only_where_the_reward_is_read_at_the_turn_end():
    """Read closed as a turn, a cut answer looks ended to the reward model, so the default
    takes 5.0 from it (docs/ppo.md); read at the cut, or with rule rewards, nothing; a value
    given wins, 0 included."""
    from align.ppo.config import PPOConfig
    from align.ppo.data import missing_eos_penalty

    assert PPOConfig().missing_eos_penalty is None and PPOConfig().lam == 1.0
    assert missing_eos_penalty(None, turn_end=True) == 5.0
    assert missing_eos_penalty(None, turn_end=False) == 0.0
    assert missing_eos_penalty(0.0, turn_end=True) == 0.0
    assert missing_eos_penalty(1.0, turn_end=False) == 1.0


def test_missing_eos_penalty_comes_off_the_cut_responses_score_only():
    """compute_rewards with the resolved penalty (PPORun.eos_penalty), by hand: scores 1.0
    (ended) and 0.5 (cut), penalty 5, no KL (equal log-probs): the shaped scores are 1.0 and
    -4.5, put on each response's last token; reward/raw keeps the reward model's scores."""
    import torch

    from align.ppo.rollout import Experience
    from align.ppo.update import compute_rewards

    mask = torch.tensor([[True, True, False], [True, True, True]])
    zeros = torch.zeros(2, 3)
    exp = Experience(prompt_ids=torch.ones(2, 1, dtype=torch.long),
                     prompt_mask=torch.ones(2, 1, dtype=torch.bool),
                     response_ids=torch.ones(2, 3, dtype=torch.long), mask=mask,
                     ended=torch.tensor([True, False]), logprobs=zeros, ref_logprobs=zeros,
                     values=zeros, scores=torch.tensor([1.0, 0.5]), entropy=zeros)
    a = PPOConfig()  # missing_eos_penalty unset: the caller passes the resolved value
    rewards, metrics = compute_rewards(a, exp, 0.05, RunningMoments(), eos_penalty=5.0)
    assert rewards.tolist() == [[0.0, 1.0, 0.0], [0.0, 0.0, -4.5]]
    assert metrics["reward/raw"] == pytest.approx(0.75)
    assert metrics["reward/normalized"] == pytest.approx((1.0 - 4.5) / 2)
    # unset and not passed: no penalty (the config's None counts as 0)
    rewards, _ = compute_rewards(a, exp, 0.05, RunningMoments())
    assert rewards[1, 2].item() == 0.5
