"""PPO with rule rewards: the reward functions GRPO takes (--reward-funcs, --reward-fn,
--reward-weights), with or without a reward model; with none, the critic starts from the
policy (a value head of zeros on its backbone, or a critic adapter on the shared LoRA base)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from align.metrics import read_metrics
from tests.conftest import run_cli, write_jsonl
from tests.ppo.conftest import POSITIVE

REWARD_FN = '''
POSITIVE = {positive!r}


def positive(prompts, completions, **kwargs):
    """The share of the answer's words that are positive ones."""
    out = []
    for c in completions:
        words = c[-1]["content"].split()
        out.append(sum(w in POSITIVE for w in words) / len(words) if words else 0.0)
    return out
'''


def reward_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_rewards.py"
    path.write_text(REWARD_FN.format(positive=set(POSITIVE)), encoding="utf-8")
    return path


def rule_args(model, data, out, *extra):
    return ["rlhf", "--algo", "ppo", "--model", model, "--dataset", data,
            "--output-dir", out, "--rollout-batch-size", "32", "--max-new-tokens", "12",
            "--per-device-train-batch-size", "16", "--num-mini-batches", "2",
            "--lr-scheduler-type", "constant", "--warmup-ratio", "0", "--critic-lr", "1e-3",
            "--report-to", "none", *extra]


@pytest.mark.parametrize("mode,actor_lr", [("full", "2e-4"), ("lora", "1e-3")])
def test_rule_reward_rises_without_a_reward_model(tmp_path, capsys, tiny_sft, prompt_files,
                                                  mode, actor_lr):
    """No --reward-model: a user function (the share of positive words) and the built-in
    length reward, weighted; the held-out reward rises and the critic trains from the
    policy."""
    train, held_out = prompt_files
    out = tmp_path / mode
    extra = ["--lora"] if mode == "lora" else []
    code, stdout, err = run_cli(rule_args(
        tiny_sft, train, out, "--reward-fn", f"{reward_file(tmp_path)}:positive",
        "--reward-funcs", "length", "--length-target", "4", "--reward-weights", "0.5,1",
        "--eval-dataset", held_out, "--max-steps", "10", "--save-steps", "10",
        "--actor-lr", actor_lr, *extra), capsys)
    assert code == 0, err
    assert "rewards: length x0.5, positive x1" in stdout
    assert "reward model" not in stdout.split("rewards:")[0]  # no reward-model role
    assert "reward read" not in stdout  # no reward model reads a score anywhere
    # ... and the default missing-EOS penalty (in a reward model's units) stays off
    assert "off a response cut without EOS" not in stdout
    final = json.loads((out / "final_metrics.json").read_text())
    # share of positive words (0-1) + 0.5 x length reward (0-1); development runs (seeds 1, 2)
    # rose from 0.23-0.24 to 0.49-1.11 (full) and 0.42-0.65 (LoRA)
    assert final["eval_reward_after"] > final["eval_reward_before"] + 0.15, final
    rows = [r for r in read_metrics(out) if "reward/raw" in r]
    first, last = rows[0], rows[-1]
    assert last["reward/positive"] > first["reward/positive"]
    for row in rows:  # the raw reward is the weighted sum of the sources' means
        assert row["reward/raw"] == pytest.approx(
            0.5 * row["reward/length"] + row["reward/positive"], abs=1e-5)
    assert rows[-1]["value/explained_var"] > rows[0]["value/explained_var"]
    critic = out / "critic"
    assert (critic / ("adapter_model.safetensors" if mode == "lora" else
                      "model.safetensors")).exists()


def test_reward_model_and_rules_add_up_with_their_weights(tmp_path, capsys, tiny_sft,
                                                         tiny_pref_rm, prompt_files):
    """--reward-model and a rule together: the raw reward is w_rm x score + w x rule, the
    same first responses as the reward model alone (the sampling does not depend on it)."""
    runs = {}
    for name, extra in (("rm", []), ("both", ["--reward-fn",
                                              f"{reward_file(tmp_path)}:positive",
                                              "--reward-weights", "2,3"])):
        out = tmp_path / name
        code, stdout, err = run_cli(rule_args(tiny_sft, prompt_files[0], out, "--reward-model",
                                              tiny_pref_rm, "--max-steps", "1", *extra), capsys)
        assert code == 0, err
        # chat prompts and a reward model: read closed as a turn, a cut answer costs 5
        assert "reward read closed as a turn (--reward-at-turn-end), 5 off a response cut " \
            "without EOS" in stdout
        runs[name] = [r for r in read_metrics(out) if "reward/raw" in r][0]
    rm, both = runs["rm"], runs["both"]
    assert both["rollout/response_len"] == rm["rollout/response_len"]
    assert both["reward/raw"] == pytest.approx(2 * rm["reward/raw"] + 3 * both["reward/positive"],
                                               abs=1e-4)


def test_total_scores_weights_and_abstentions():
    """Worked by hand: rules abstain (None) on the 2nd response, and all of them on the 3rd."""
    from align.ppo.rewards import Scorer, rule_rewards, total_scores
    from align.rewards.sources import RewardPlan, RewardSource

    def a(prompts, completions, **_):
        return [1.0, None, None]

    def b(prompts, completions, solution, **_):
        return [0.5, float(solution[1]), None]

    plan = RewardPlan([RewardSource("a", "plugin", a), RewardSource("b", "builtin", b)], [2.0, 3.0])
    scorer = Scorer(plan, None, plan.sources, plan.weights)
    rows = [{"prompt": "p", "solution": s} for s in (0, 4, 1)]
    totals, kept = rule_rewards(scorer, rows, ["x", "y", "z"], [[1], [2], [3]])
    assert totals == [2 * 1.0 + 3 * 0.5, 3 * 4.0, None]
    assert kept == {"a": [1.0], "b": [0.5, 4.0]}
    scores, abstained = total_scores(None, None, totals)
    assert scores.tolist() == [3.5, 12.0, 0.0] and abstained.tolist() == [False, False, True]
    # with a reward model of weight 0.5: its score is added to every response
    scores, abstained = total_scores(torch.tensor([2.0, -2.0, 4.0]), 0.5, totals)
    assert scores.tolist() == [4.5, 11.0, 2.0] and not abstained.any()


@pytest.mark.parametrize("extra,message", [
    ([], "no reward: give --reward-model DIR, --reward-funcs"),
    (["--reward-funcs", "accuracy", "--reward-weights", "1,2"],
     "--reward-weights has 2 values for 1 reward sources"),
    (["--reward-funcs", "accuracy"], "compares answers with the dataset's 'solution' column"),
    (["--reward-fn", "nowhere.py:f"], "no such file nowhere.py"),
    (["--reward-funcs", "length", "--length-target", "3", "--reward-at-turn-end"],
     "--reward-at-turn-end acts on the reward model, and there is none"),
    (["--reward-funcs", "length", "--length-target", "3", "--lora", "--critic-base",
      "reward-model"], "--critic-base reward-model acts on the reward model"),
    (["--reward-funcs", "exactness"], "--reward-funcs 'exactness' is not valid"),
])
def test_reward_flags_checked_before_any_model_loads(tmp_path, capsys, monkeypatch, tiny_sft,
                                                    prompt_files, extra, message):
    import align.ppo.models

    def no_loading(*a, **k):
        raise AssertionError("a model was loaded before the flags were checked")

    monkeypatch.setattr(align.ppo.models, "load_roles", no_loading)
    code, out, err = run_cli(rule_args(tiny_sft, prompt_files[0], tmp_path / "o", *extra),
                             capsys)
    assert code == 2, out + err
    assert message in err, err
    assert "Traceback" not in err


def test_reward_fn_is_imported_only_when_a_run_starts(tmp_path, capsys, tiny_sft, prompt_files):
    """A dry run checks that the file exists and never runs it."""
    marker = tmp_path / "ran"
    fn = tmp_path / "side_effect.py"
    fn.write_text(f"open({str(marker)!r}, 'w').close()\n\ndef r(prompts, completions, **k):\n"
                  "    return [0.0] * len(completions)\n", encoding="utf-8")
    code, out, err = run_cli(rule_args(tiny_sft, prompt_files[0], tmp_path / "o",
                                       "--reward-fn", f"{fn}:r", "--dry-run"), capsys)
    assert code == 0, err
    assert "rewards: r x1" in out and not marker.exists()
    assert "a trainable copy of the policy" in out
