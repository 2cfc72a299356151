"""TRL's spellings: a TRL command line runs as an align one (dry run and a real 2-step run),
underscore spellings of every flag, TRL's aliases, bool values and lists; ignored and refused
flags; YAML keys; --help shows align's names once. And the TrainingArguments flags users
expect: --warmup-steps, --eval-strategy/--eval-steps, --optim, --run-name."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from align.aliases import ALIASES, FIXED, IGNORED, REFUSED, normalize_argv
from align.config import OPTIMIZERS
from tests.conftest import run_cli, write_jsonl


@pytest.fixture(scope="module")
def ultrafeedback(tmp_path_factory):
    """A saved DatasetDict with train and test splits in trl-lib/ultrafeedback_binarized's
    layout (prompt; chosen and rejected as conversations that repeat the prompt)."""
    from datasets import Dataset, DatasetDict

    rng = random.Random(0)

    def rows(n):
        out = []
        for _ in range(n):
            a, b = rng.randint(0, 9), rng.randint(0, 9)
            p = f"What is {a} + {b}?"
            turn = [{"role": "user", "content": p}]
            out.append({"prompt": p, "score_chosen": 8.0, "score_rejected": 2.0,
                        "chosen": turn + [{"role": "assistant", "content": str(a + b)}],
                        "rejected": turn + [{"role": "assistant", "content": str(a + b + 1)}]})
        return out

    path = tmp_path_factory.mktemp("ufb") / "ultrafeedback_binarized"
    DatasetDict({"train": Dataset.from_list(rows(32)),
                 "test": Dataset.from_list(rows(8))}).save_to_disk(str(path))
    return path


def trl_dpo_line(model, dataset, out):
    """TRL's documented DPO command line (trl/scripts/dpo.py, LoRA variant), with the flags
    the lead's list adds, and a tiny model, 2 steps and batches to match."""
    return ["rlhf", "--algo", "dpo",
            "--dataset_name", dataset, "--model_name_or_path", model,
            "--learning_rate", "5.0e-6", "--num_train_epochs", "1",
            "--per_device_train_batch_size", "2", "--max_steps", "2",
            "--gradient_accumulation_steps", "8", "--gradient_checkpointing",
            "--logging_steps", "1", "--eval_strategy", "steps", "--eval_steps", "1",
            "--output_dir", out, "--no_remove_unused_columns",
            "--use_peft", "--lora_r", "32", "--lora_alpha", "16",
            "--lora_target_modules", "q_proj", "v_proj", "--bf16", "False",
            "--report_to", "none", "--max_length", "64", "--beta", "0.1",
            "--warmup_steps", "1", "--lr_scheduler_type", "cosine", "--optim", "adamw_torch",
            "--run_name", "trl-line", "--seed", "1"]


def test_trl_dpo_command_line_dry_run(capsys, tmp_path, tiny_lm, ultrafeedback):
    code, out, err = run_cli(trl_dpo_line(tiny_lm, ultrafeedback, tmp_path / "o") +
                             ["--dry-run"], capsys)
    assert code == 0, err
    for line in ("learning_rate: 5e-06", "lora: True", "lora_r: 32", "lora_alpha: 16",
                 "lora_target_modules: 'q_proj,v_proj'", "gradient_accumulation_steps: 8",
                 "eval_strategy: 'steps'", "eval_steps: 1", "warmup_steps: 1",
                 "optim: 'adamw_torch'", "run_name: 'trl-line'", "seed: 1", "bf16: False",
                 "gradient_checkpointing: True", "eval_dataset_split: 'test'"):
        assert line in out, line
    assert "(split train): 32 records" in out and "eval data: 8 records" in out
    assert "--no_remove_unused_columns is not needed" in err
    assert "evaluates on the test split of --dataset_name" in err


def test_trl_dpo_command_line_trains_two_steps(capsys, tmp_path, tiny_lm, ultrafeedback):
    out = tmp_path / "Qwen2-0.5B-DPO"
    code, stdout, err = run_cli(trl_dpo_line(tiny_lm, ultrafeedback, out), capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval_loss" in r]
    assert [r["step"] for r in train] == [1, 2] and [r["step"] for r in evals] == [1, 2]
    assert train[0]["learning_rate"] == 0.0 and train[1]["learning_rate"] == pytest.approx(5e-6)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 32 and config["lora_alpha"] == 16
    assert set(config["target_modules"]) == {"q_proj", "v_proj"}
    card = (out / "README.md").read_text()
    assert "**dpo**" in card and "eval_loss" in card and "(split train): 32 records" in card


def test_help_shows_align_names_once(capsys):
    code, out, _ = run_cli(["rlhf", "--algo", "dpo", "--help"], capsys)
    assert code == 0
    for ours, theirs in (("--lora-r", "--lora_r"), ("--lora / --no-lora", "--use_peft"),
                         ("--model PATH", "--model_name_or_path"),
                         ("--learning-rate", "--learning_rate")):
        assert out.count(ours) >= 1 and theirs not in out, (ours, theirs)


def test_every_flag_takes_its_underscore_spelling(capsys):
    from align.cli.run import _run_params

    for param in _run_params(None):
        names = param.opts + param.secondary_opts
        for flag in [n for n in names if n.startswith("--") and "-" in n[2:]]:
            under = "--" + flag[2:].replace("-", "_")
            if flag.startswith("--no-"):
                under = "--no_" + flag[5:].replace("-", "_")
            assert under in names, (param.name, under)


@pytest.mark.parametrize("flags, expected", [
    (["--bf16", "True"], ["--bf16"]),
    (["--gradient_checkpointing", "false"], ["--no-gradient-checkpointing"]),
    (["--use_peft=true"], ["--lora"]),
    (["--load_in_4bit", "1"], ["--qlora"]),
    (["--lora_target_modules", "q_proj", "k_proj", "v_proj", "--seed", "3"],
     ["--lora_target_modules", "q_proj,k_proj,v_proj", "--seed", "3"]),
    (["--report_to", "wandb", "tensorboard"], ["--report_to", "wandb,tensorboard"]),
    (["--model_revision", "main", "--bnb_4bit_quant_type", "nf4", "--dataset_streaming"], []),
    (["--remove_unused_columns", "False", "--seed", "1"], ["--seed", "1"]),
])
def test_trl_forms_are_rewritten(flags, expected):
    bools = {"bf16", "gradient_checkpointing", "lora", "qlora"}
    assert normalize_argv(flags, bools)[0] == expected


@pytest.mark.parametrize("flag", ["--load_in_8bit", "--use_dora", "--fsdp", "--hub_token",
                                  "--lora_task_type"])
def test_refused_trl_flags_say_why(capsys, tmp_path, flag):
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "c"}])
    code, _, err = run_cli(["rlhf", "--algo", "dpo", "--model", "m/m", "--dataset", data,
                            flag, "x", "--dry-run"], capsys)
    assert code == 2 and err.startswith(f"error: {flag}:") and err.count("\n") == 1, err
    code, _, err = run_cli(["rlhf", "--algo", "dpo", "--model_revision", "v2", "--dry-run"],
                           capsys)
    assert code == 2 and "default revision" in err


def test_alias_table_names_real_fields_and_no_field_is_refused():
    from align.registry import ALGOS

    fields = {f.name for spec in ALGOS.values() for cls in spec.groups().values()
              for f in dataclasses.fields(cls)}
    assert set(ALIASES) <= fields
    names = [*IGNORED, *REFUSED, *FIXED, *(a for v in ALIASES.values() for a in v)]
    assert not set(names) & fields and len(names) == len(set(names))


def test_yaml_recipe_with_trl_keys(capsys, tmp_path, ultrafeedback):
    recipe = tmp_path / "trl.yaml"
    recipe.write_text(f"model_name_or_path: Qwen/Qwen2.5-0.5B-Instruct\n"
                      f"dataset_name: {ultrafeedback}\nuse_peft: true\n"
                      "lora_target_modules: [q_proj, v_proj]\nlearning_rate: 1.0e-5\n"
                      "remove_unused_columns: false\n")
    code, out, err = run_cli(["rlhf", "--algo", "dpo", "--config", recipe, "--dry-run"], capsys)
    assert code == 0, err
    assert "lora: True" in out and "lora_target_modules: 'q_proj,v_proj'" in out
    assert "remove_unused_columns is not needed" in err
    recipe.write_text("model_name_or_path: m/m\nload_in_8bit: true\n")
    code, _, err = run_cli(["rlhf", "--algo", "dpo", "--config", recipe, "--dry-run"], capsys)
    assert code == 2 and "load_in_8bit: 8-bit bases are not supported" in err


def test_optimizer_names_are_transformers_own():
    from transformers.training_args import OptimizerNames

    assert set(OPTIMIZERS) == {o.value for o in OptimizerNames}


def test_optim_reaches_the_trainer_and_missing_packages_are_machine_issues(
        capsys, tmp_path, tiny_lm, monkeypatch):
    from align import plan, runner

    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"{i} +", "chosen": " a",
                                               "rejected": " b"} for i in range(8)])
    base = ["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", data, "--max-steps", "3",
            "--report-to", "none"]
    code, _, err = run_cli(base + ["--optim", "adafactor", "--output-dir", tmp_path / "a"],
                           capsys)
    assert code == 0, err
    from trl import DPOConfig

    from align.algos.common import trl_config
    from align.options import resolve
    from align.registry import flag_owners, get_algo

    spec = get_algo("dpo")
    cfg = resolve(spec, {"model": "m", "dataset": "d", "optim": "adafactor",
                         "warmup_steps": 3, "run_name": "r",
                         "output_dir": str(tmp_path / "c")}, {}, flag_owners())
    args = trl_config(cfg, DPOConfig)
    assert (args.optim, args.warmup_steps, args.run_name) == ("adafactor", 3, "r")
    monkeypatch.setattr(plan, "has_package", lambda name: name != "bitsandbytes")
    monkeypatch.setattr(runner, "has_package", lambda name: name != "bitsandbytes")
    code, _, err = run_cli(base + ["--optim", "paged_adamw_8bit", "--dry-run"], capsys)
    assert code == 0 and "--optim paged_adamw_8bit needs bitsandbytes" in err
    code, _, err = run_cli(base + ["--optim", "adamw_8bit", "--output-dir", tmp_path / "b"],
                           capsys)
    assert code == 2 and "needs bitsandbytes" in err


def test_eval_strategy_needs_held_out_data_and_eval_steps_sets_the_cadence(capsys, tmp_path,
                                                                         tiny_lm):
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"{i} +", "chosen": " a",
                                               "rejected": " b"} for i in range(16)])
    base = ["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", data,
            "--report-to", "none"]
    code, _, err = run_cli(base + ["--eval-strategy", "steps", "--dry-run"], capsys)
    assert code == 2 and "needs held-out data" in err
    out = tmp_path / "e"
    code, _, err = run_cli(base + ["--eval-split", "0.25", "--eval-steps", "2", "--max-steps",
                                   "4", "--output-dir", out], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "eval_loss" in r] == [2, 4]
    out = tmp_path / "no"
    code, _, err = run_cli(base + ["--eval-split", "0.25", "--eval-strategy", "no",
                                   "--max-steps", "2", "--output-dir", out], capsys)
    assert code == 0 and "eval_loss" not in (out / "metrics.jsonl").read_text()


def test_ppo_refuses_optimizers_its_engine_does_not_build(capsys, tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a"}])
    code, _, err = run_cli(["rlhf", "--algo", "ppo", "--model", "m/m", "--reward-model", "r/r",
                            "--dataset", data, "--optim", "adafactor", "--dry-run"], capsys)
    assert code == 2 and "AdamW" in err
