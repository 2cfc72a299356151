"""Reward model, PPO with that reward model, and GRPO (own reward function and a built-in one)
on SmolLM2-135M-Instruct; each judged on the held-out advice prompts like the offline runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.real import harness

pytestmark = pytest.mark.real

HERE = Path(__file__).parent
COMMON = ["--lr-scheduler-type", "constant", "--warmup-ratio", "0", "--save-steps", "1000",
          "--report-to", "none", "--logging-steps", "2", "--seed", "0"]
RM_STEPS = 30
# GRPO steps per reward source: the length reward moved the greedy answers in 12 steps, the
# sparser gold-based reward function needed 20.
GRPO_STEPS = {"reward-fn": 20, "builtin-length": 12}
# Answers of up to 96 tokens: about half of the base model's answers to the training questions
# end within that, so rollouts hold both endings and ramblings to learn from.
BUDGET = "96"


@pytest.fixture(scope="module")
def trained_rm(real_model: Path, data: dict[str, Path],
               tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A reward model trained on the fact pairs (the same pairs DPO learns from)."""
    out = tmp_path_factory.mktemp("rm") / "rm"
    wall, code = harness.run_align(["rlhf", "--algo", "rm", "--model", real_model, "--dataset",
                                    data["pairwise"], "--output-dir", out, "--max-steps",
                                    RM_STEPS, "--learning-rate", "1e-5", *harness.OFFLINE_FLAGS])
    assert code == 0, f"reward-model training failed (exit code {code})"
    return out, wall


def test_rm_ranks_held_out_pairs(real_model, data, trained_rm):
    from transformers import set_seed

    rm, wall = trained_rm
    set_seed(0)  # the untrained score head is random: the same one every run
    before = harness.rm_accuracy(real_model, data["held_out_pairs"])
    after = harness.rm_accuracy(rm, data["held_out_pairs"])
    harness.record_rm(before, after, RM_STEPS, wall)
    assert after >= 0.9 and after > before, (before, after)


# PPO's settings, chosen on the dev prompts (tests/real/task.py DEV; runs logged by
# `python -m tests.real.ppo_dev`, docs/real-model.md has what was tried): LoRA on the one
# shared base, 16 prompts per step, lam 1.0 (the reward reaches every token without leaning on
# a critic that has not learned yet), one critic warm-up step, the EOS penalty.
PPO_FLAGS = ["--lora", "--rollout-batch-size", "16", "--per-device-train-batch-size", "16",
             "--num-mini-batches", "2", "--max-new-tokens", "64", "--ppo-epochs", "2",
             "--lam", "1.0", "--missing-eos-penalty", "1.0", "--critic-warmup-steps", "1",
             "--actor-lr", "1e-4", "--critic-lr", "2e-4", "--rollout-generate-batch-size",
             "16", "--local-rollout-forward-batch-size", "16"]
PPO_STEPS = {"sft": 10, "base": 16}
# From the base model, whose answers nearly all run past 64 tokens, the reward model is shown
# each answer closed as in its training data (--reward-at-turn-end; the EOS penalty marks the
# cut ones) and the KL penalty is raised: dev gold after 16 steps 0.19 with --kl-coef 0.15,
# 0.12 with the default 0.05 (base: 0.01); 12 steps were too few with or without the flag
# (docs/real-model.md has every run).
PPO_BASE_FLAGS = ["--reward-at-turn-end", "--kl-coef", "0.15"]
# From the SFT stage the reward was read at the last token when the suite's settings were
# chosen (held-out gold 0.41 -> 0.54; read at the turn end, now the default for chat prompts,
# 0.41 -> 0.48 in one run): the suite keeps the setting it was chosen with.
PPO_SFT_FLAGS = ["--no-reward-at-turn-end"]


def _ppo(start_model, rm, data, out, steps, capsys, *extra):
    _, wall = harness.train(["rlhf", "--algo", "ppo", "--model", start_model, "--reward-model",
                             rm, "--dataset", data["prompts"], "--output-dir", out,
                             "--max-steps", steps, *PPO_FLAGS, *extra, *COMMON], capsys)
    return harness.evaluate(out), wall


def test_ppo_from_sft_adds_to_sft(data, sft_model, sft_eval, trained_rm, base_answers,
                                  tmp_path, capsys):
    """The RLHF pipeline: actor (and reference) from the SFT stage, the trained reward model.
    PPO must add at least 0.1 gold to the SFT stage's."""
    rm, _ = trained_rm
    after, wall = _ppo(sft_model[0], rm, data, tmp_path / "ppo", PPO_STEPS["sft"], capsys,
                       *PPO_SFT_FLAGS)
    harness.check_beats_base("ppo (from sft)", after, base_answers, PPO_STEPS["sft"], wall,
                             flags=PPO_FLAGS + PPO_SFT_FLAGS, gold_sft=sft_eval["gold"])
    assert after["gold"] >= sft_eval["gold"] + 0.1, (sft_eval["gold"], after["gold"])


def test_ppo_from_base_with_the_trained_rm(real_model, data, trained_rm, base_answers,
                                           tmp_path, capsys):
    rm, _ = trained_rm
    after, wall = _ppo(real_model, rm, data, tmp_path / "ppo", PPO_STEPS["base"], capsys,
                       *PPO_BASE_FLAGS)
    harness.check_beats_base("ppo (from base)", after, base_answers, PPO_STEPS["base"], wall,
                             flags=PPO_FLAGS + PPO_BASE_FLAGS)


@pytest.mark.parametrize("reward", ["reward-fn", "builtin-length"])
def test_grpo_beats_base(reward, real_model, data, base_answers, tmp_path, capsys):
    out = tmp_path / "grpo"
    source = (["--reward-fn", f"{HERE / 'rewards.py'}:concise_reward"] if reward == "reward-fn"
              else ["--reward-funcs", "length", "--length-target", "48"])
    # At --learning-rate 5e-6 the reward-fn run's reward only began to rise after 10 steps; at
    # 2e-5 the sampled answers' reward rose from 0 to 0.9 by step 10, but 12 steps left the
    # greedy held-out answers short of ending (gold 0.04): the greedy answers lag the samples.
    extra = ["--per-device-train-batch-size", "8", "--num-generations", "4",
             "--max-completion-length", BUDGET, "--learning-rate", "2e-5", *source]
    _, wall = harness.train(["rlhf", "--algo", "grpo", "--model", real_model, "--dataset",
                             data["prompts"], "--output-dir", out, "--max-steps",
                             GRPO_STEPS[reward], *extra, *COMMON], capsys)
    harness.check_beats_base(f"grpo ({reward})", harness.evaluate(out), base_answers,
                             GRPO_STEPS[reward], wall, flags=extra)
