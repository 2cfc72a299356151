"""GRPO end to end through the CLI on a tiny random model and toy tasks a random model can learn.

Each run scores the same held-out prompts with the same sampling seed before and after
training; the mean reward must rise by a clear margin, for a built-in reward, a user
``--reward-fn`` and a reward model. The runs are kept to a few seconds each (CI budget).
"""

from __future__ import annotations

import json
import random
import re

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
                      ["--reward-fn", f"{plugin}:share_of_letters", "--beta", "0"], steps=30)
    before, after = final["eval_reward_before"], final["eval_reward_after"]
    assert after > before + 0.2, (before, after)


def test_grpo_reward_model_score_rises(tmp_path, capsys, tiny_lm, tiny_rm, toy):
    # The tiny reward model is random but fixed: raising its score is a real optimisation.
    # Its score depends mostly on the last tokens, so short completions learn fastest. Scores
    # are ~0.15 apart within a group; 32 held-out samples put the noise of the mean near 0.03.
    _, final = _train(tmp_path, capsys, tiny_lm, toy,
                      ["--reward-model", tiny_rm, "--max-completion-length", "4",
                       "--per-device-train-batch-size", "16", "--beta", "0"], steps=20, lr="2e-2")
    before, after = final["eval_reward_before"], final["eval_reward_after"]
    assert after > before + 0.1, (before, after)


# --- reference model, LoRA, RLOO --------------------------------------------------------------

def _session(tmp_path, model, toy, algo="grpo", **flags):
    """Resolve flags as the CLI does and build the trainer without training."""
    from align.algos.online import prepare
    from align.data import load_valid
    from align.options import resolve
    from align.registry import flag_owners, get_algo

    spec = get_algo(algo)
    values = {"model": str(model), "dataset": str(toy[0]), "output_dir": str(tmp_path / "s"),
              "reward_funcs": "format", "num_generations": 4,
              "per_device_train_batch_size": 8, "report_to": "none"}
    values.update(flags)
    cfg = resolve(spec, values, {}, flag_owners())
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    classes = {"grpo": (GRPOConfig, GRPOTrainer), "rloo": (RLOOConfig, RLOOTrainer)}[algo]
    return prepare(cfg, load_valid(str(toy[0]), "prompt", None), None, *classes)


def test_beta_zero_loads_no_reference_model(tmp_path, tiny_lm, toy):
    assert _session(tmp_path, tiny_lm, toy, beta=0.0).trainer.ref_model is None
    assert _session(tmp_path, tiny_lm, toy, beta=0.04).trainer.ref_model is not None
    # with LoRA the reference is the base with adapters disabled: no second copy either
    lora = _session(tmp_path, tiny_lm, toy, beta=0.04, lora=True)
    assert lora.trainer.ref_model is None and lora.trainer.model.peft_config


def test_generation_batch_is_raised_to_whole_groups(tmp_path, tiny_lm, toy):
    # 4 completions per step but groups of 8: each rollout must hold a whole group
    s = _session(tmp_path, tiny_lm, toy, per_device_train_batch_size=4, num_generations=8)
    assert s.trainer.args.generation_batch_size == 8
    assert s.trainer.args.steps_per_generation == 2


def test_grpo_lora_trains_and_saves_an_adapter(tmp_path, capsys, tiny_lm, toy):
    out = tmp_path / "lora"
    code, _, err = run_cli(["rlhf", "--algo", "grpo", "--model", tiny_lm, "--dataset", toy[0],
                            "--output-dir", out, "--max-steps", "2", "--lora",
                            "--reward-funcs", "length", "--length-target", "4", *FAST], capsys)
    assert code == 0, err[-3000:]
    assert (out / "adapter_config.json").exists()
    assert "rewards/length/mean" in read_metrics(out)[0]


def test_rloo_runs_with_the_same_reward_flags(tmp_path, capsys, tiny_lm, toy):
    out = tmp_path / "rloo"
    code, _, err = run_cli(["rlhf", "--algo", "rloo", "--model", tiny_lm, "--dataset", toy[0],
                            "--eval-dataset", toy[1], "--output-dir", out, "--max-steps", "3",
                            "--reward-funcs", "format,accuracy", "--reward-weights", "1,2",
                            "--format-pattern", r".*\d.*", *FAST], capsys)
    assert code == 0, err[-3000:]
    row = [r for r in read_metrics(out) if "loss" in r][-1]
    for key in ("rewards/format/mean", "rewards/accuracy/mean", "objective/kl",
                "rollout/response_len", "policy/entropy"):
        assert key in row, key
    final = json.loads((out / "final_metrics.json").read_text())
    assert "eval_reward_after" in final and final["reward_sources"] == "format x1, accuracy x2"


# --- collapse: the shared detectors and --on-collapse -------------------------------------------

SHORT = '''
def short(prompts, completions, completion_ids, **kwargs):
    """Rewards saying nothing: drives the policy to answer with EOS alone (mute)."""
    return [-float(len(ids)) for ids in completion_ids]
'''
COLLAPSE = ["--num-generations", "4", "--max-completion-length", "10",
            "--per-device-train-batch-size", "16", "--learning-rate", "5e-2", "--beta", "0",
            "--lr-scheduler-type", "constant", "--warmup-ratio", "0", "--report-to", "none",
            "--seed", "0", "--health-patience", "2", "--mute-len-ratio", "0.6"]


def _collapse(tmp_path, capsys, model, toy, *extra):
    plugin = tmp_path / "short.py"
    plugin.write_text(SHORT)
    out = tmp_path / "collapse"
    code, _, err = run_cli(["rlhf", "--algo", "grpo", "--model", model, "--dataset", toy[0],
                            "--output-dir", out, "--max-steps", "30",
                            "--reward-fn", f"{plugin}:short", *COLLAPSE, *extra], capsys)
    return out, code, err


def test_forced_mute_collapse_stops_with_exit_code_3(tmp_path, capsys, tiny_lm, toy):
    out, code, err = _collapse(tmp_path, capsys, tiny_lm, toy, "--on-collapse", "stop",
                               "--save-steps", "1000")
    assert code == 3, err[-3000:]
    assert "mute: mean response length" in err and "stopped by --on-collapse stop" in err
    steps = [r["step"] for r in read_metrics(out) if "loss" in r]
    assert max(steps) < 30  # stopped early
    assert (out / "model.safetensors").exists()  # saved before exiting


def test_forced_collapse_rolls_back_then_stops_after_max_rollbacks(tmp_path, capsys, tiny_lm,
                                                                    toy):
    out, code, err = _collapse(tmp_path, capsys, tiny_lm, toy, "--on-collapse", "rollback",
                               "--max-rollbacks", "1", "--save-steps", "2")
    assert code == 3, err[-3000:]
    assert re.search(r"rollback 1/1 at step \d+: resuming from checkpoint-\d+ at 0.5 x the "
                     "learning rate", err), err[-3000:]
    assert "1 rollbacks already (--max-rollbacks); stopping instead" in err
    rows = [r for r in read_metrics(out) if "loss" in r]
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps))  # the rolled-back steps were replaced, not duplicated
    assert rows[-1]["learning_rate"] == pytest.approx(2.5e-2)  # halved after the rollback


# --- clear errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("flags, message", [
    ([], "no reward: give --reward-model DIR, --reward-funcs"),
    (["--reward-funcs", "format,length", "--length-target", "3", "--reward-weights", "1"],
     "--reward-weights has 1 values for 2 reward sources; give one per source in this order: "
     "format, length"),
    (["--reward-funcs", "bleu"], "--reward-funcs 'bleu' is not valid; choose from [accuracy, "
                                 "format, length]"),
    (["--reward-funcs", "format", "--format-pattern", "(unclosed"], "is not a valid regex"),
    (["--reward-funcs", "length"], "--reward-funcs length needs --length-target N"),
    (["--reward-funcs", "format", "--ref-model", "{model}"], "--ref-model is not used by --algo "
                                                             "grpo"),
    (["--reward-fn", "missing.py:f"], "--reward-fn missing.py:f: no such file"),
    (["--reward-fn", "rewards.txt"], "should look like path/to/file.py:function_name"),
    (["--reward-funcs", "format", "--num-generations", "1"],
     "--num-generations must be in [2, inf), got 1"),
])
def test_clear_errors_before_training(tmp_path, capsys, tiny_lm, toy, flags, message):
    flags = [f.format(model=tiny_lm) for f in flags]
    code, _, err = run_cli(["rlhf", "--algo", "grpo", "--model", tiny_lm, "--dataset", toy[0],
                            "--output-dir", tmp_path / "e", *flags], capsys)
    assert code == 2 and message in err, err[-2000:]
    assert "Traceback" not in err


def test_accuracy_without_solution_column_is_an_error(tmp_path, capsys, tiny_lm):
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "1+1="}, {"prompt": "2+2="}])
    code, _, err = run_cli(["rlhf", "--algo", "grpo", "--model", tiny_lm, "--dataset", data,
                            "--output-dir", tmp_path / "e", "--reward-funcs", "accuracy"], capsys)
    assert code == 2 and "has none (map yours with --columns solution=" in err


def test_use_vllm_without_vllm_says_how_to_install(tmp_path, capsys, tiny_lm, toy, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "vllm" else real(name, *a))
    code, _, err = run_cli(["rlhf", "--algo", "grpo", "--model", tiny_lm, "--dataset", toy[0],
                            "--output-dir", tmp_path / "e", "--reward-funcs", "format",
                            "--use-vllm"], capsys)
    assert code == 2 and "--use-vllm needs vLLM, which is not installed: pip install vllm" in err


def test_exception_inside_user_reward_is_a_clear_error(tmp_path, capsys, tiny_lm, toy):
    plugin = tmp_path / "oops.py"
    plugin.write_text("def oops(prompts, completions, **kw):\n    return {}['missing']\n")
    code, _, err = run_cli(["rlhf", "--algo", "grpo", "--model", tiny_lm, "--dataset", toy[0],
                            "--output-dir", tmp_path / "e", "--max-steps", "1",
                            "--reward-fn", f"{plugin}:oops", *FAST], capsys)
    assert code == 2, err[-2000:]
    assert f"--reward-fn {plugin}:oops raised KeyError: 'missing' (oops.py line 2)" in err
    assert "Traceback" not in err


def test_dry_run_with_beta_zero_plans_no_reference(tmp_path, capsys, tiny_lm, toy):
    code, out, _ = run_cli(["rlhf", "--algo", "grpo", "--model", tiny_lm, "--dataset", toy[0],
                            "--reward-funcs", "format", "--beta", "0", "--dry-run"], capsys)
    assert code == 0 and "reference:" not in out and "dry run" in out


def test_algos_lists_grpo_and_rloo_with_flag_sources(capsys):
    code, out, _ = run_cli(["algos"], capsys)
    assert code == 0 and "grpo" in out and "rloo" in out
    code, out, _ = run_cli(["algos", "rloo"], capsys)
    assert code == 0 and "--num-generations" in out and "--loss-type" not in out
