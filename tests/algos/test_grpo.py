"""GRPO end to end through the CLI on a tiny random model and toy tasks a random model can learn.

Each run scores the same held-out prompts with the same sampling seed before and after
training; the mean reward must rise by a clear margin, for a built-in reward, a user
``--reward-fn`` and a reward model. The runs are kept to a few seconds each (CI budget).
"""

from __future__ import annotations

import json
import random

import pytest

from align.metrics import read_metrics
from tests.conftest import run_cli, write_jsonl

# Small and fast: 2 prompts x 4 completions of at most 10 tokens per step, high LR.
FAST = ["--num-generations", "4", "--max-completion-length", "10",
        "--per-device-train-batch-size", "8", "--lr-scheduler-type", "constant",
        "--warmup-ratio", "0", "--save-steps", "1000", "--report-to", "none", "--seed", "0"]
LETTERS = "aeiou"

# A user reward: the share of characters that are among the row's `letters` column.
PLUGIN = '''
def share_of_letters(prompts, completions, letters, **kwargs):
    """Fraction of the completion's characters found in this row's `letters`."""
    return [sum(ch in ls for ch in c) / max(1, len(c)) for c, ls in zip(completions, letters)]
'''


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models on a shared 2-core machine: one torch thread is ~100x faster per matmul than
    two threads fighting other processes for the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def prompts(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"prompt": "Say something: " + " ".join(rng.sample("abcdefghij", 3)),
             "solution": str(rng.randint(0, 9)), "letters": LETTERS} for _ in range(n)]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("grpo_data")
    return write_jsonl(d / "train.jsonl", prompts(32, 0)), write_jsonl(d / "eval.jsonl",
                                                                       prompts(8, 1))


def _train(tmp_path, capsys, model, toy, extra, steps=16, lr="1e-2"):
    train, held_out = toy
    out = tmp_path / "run"
    code, stdout, err = run_cli(["rlhf", "--algo", "grpo", "--model", model, "--dataset", train,
                                 "--eval-dataset", held_out, "--output-dir", out,
                                 "--max-steps", str(steps), "--learning-rate", lr,
                                 *FAST, *extra], capsys)
    assert code == 0, err[-3000:]
    final = json.loads((out / "final_metrics.json").read_text())
    return out, final


def test_grpo_builtin_format_reward_rises_on_held_out_prompts(tmp_path, capsys, tiny_lm, toy):
    # A completion containing a digit gets 1: about half do at the start.
    out, final = _train(tmp_path, capsys, tiny_lm, toy,
                        ["--reward-funcs", "format", "--format-pattern", r".*\d.*"])
    before, after = final["eval_reward_before"], final["eval_reward_after"]
    print(f"format: {before:.3f} -> {after:.3f}")
    assert after > before + 0.2, (before, after)
    rows = [r for r in read_metrics(out) if "loss" in r]
    for key in ("rewards/format/mean", "rollout/response_len", "rollout/truncated_frac",
                "rollout/eos_frac", "rollout/repeat_frac", "objective/kl", "policy/entropy",
                "policy/clipfrac", "objective/scores"):
        assert key in rows[-1], key
    assert final["collapsed"] is False


def test_grpo_user_reward_fn_rises(tmp_path, capsys, tiny_lm, toy):
    plugin = tmp_path / "my_reward.py"
    plugin.write_text(PLUGIN)
    _, final = _train(tmp_path, capsys, tiny_lm, toy,
                      ["--reward-fn", f"{plugin}:share_of_letters", "--beta", "0"])
    before, after = final["eval_reward_before"], final["eval_reward_after"]
    print(f"--reward-fn: {before:.3f} -> {after:.3f}")
    assert after > before + 0.1, (before, after)


def test_grpo_reward_model_score_rises(tmp_path, capsys, tiny_lm, tiny_rm, toy):
    # The tiny reward model is random but fixed: raising its score is a real optimisation.
    # Its score depends mostly on the last tokens, so short completions learn fastest. Scores
    # are ~0.15 apart within a group; 32 held-out samples put the noise of the mean near 0.03.
    _, final = _train(tmp_path, capsys, tiny_lm, toy,
                      ["--reward-model", tiny_rm, "--max-completion-length", "4",
                       "--per-device-train-batch-size", "16", "--beta", "0"], steps=20, lr="2e-2")
    before, after = final["eval_reward_before"], final["eval_reward_after"]
    print(f"reward model: {before:.3f} -> {after:.3f}")
    assert after > before + 0.1, (before, after)
