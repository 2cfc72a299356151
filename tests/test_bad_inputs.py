"""A battery of bad inputs and faults a user meets: each ends with exit 2 and one `error:` line
that names the problem, no traceback, and no half-made output directory.

The first cases are the ones issue 17 found silent or raw (a model directory without a
tokenizer, a policy given as reward model, `--num-train-epochs -1`, `--warmup-ratio 5`, NaN in
range checks, YAML `max_steps: 2.9`, duplicate YAML keys, a read-only output dir, a plugin
calling sys.exit, all-None rewards, no chat template for PPO/GRPO, ...); the rest are their
neighbours.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import run_cli, write_jsonl
from tests.test_resume_faults import error_line


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_lm, tiny_rm, pairs_file):
    """Models and files the cases point at (built once)."""
    d = tmp_path_factory.mktemp("bad_inputs")
    notok = d / "no_tokenizer"
    notok.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        shutil.copy(tiny_lm / name, notok / name)
    nochat = d / "no_chat_template"
    shutil.copytree(tiny_lm, nochat)
    (nochat / "chat_template.jinja").unlink()
    noweights = d / "no_weights"
    shutil.copytree(tiny_lm, noweights)
    (noweights / "model.safetensors").unlink()
    chat = write_jsonl(d / "chat_prompts.jsonl",
                       [{"prompt": [{"role": "user", "content": f"say {w}"}]}
                        for w in ("a", "b", "c", "d") * 4])
    plain = write_jsonl(d / "prompts.jsonl", [{"prompt": f"say {w}"} for w in "abcdefgh" * 2])
    plugins = d / "plugins.py"
    plugins.write_text("import sys\n"
                       "def quits(prompts, completions, **kw):\n    sys.exit(0)\n"
                       "def abstains(prompts, completions, **kw):\n"
                       "    return [None] * len(completions)\n")
    return SimpleNamespace(lm=tiny_lm, rm=tiny_rm, pairs=pairs_file, notok=notok,
                           nochat=nochat, noweights=noweights, chat=chat, plain=plain,
                           plugins=plugins, dir=d)


def dpo(e, out, *extra):
    return ["rlhf", "--algo", "dpo", "--model", e.lm, "--dataset", e.pairs, "--output-dir", out,
            "--max-steps", "2", "--per-device-train-batch-size", "4", "--report-to", "none",
            *extra]


def ppo(e, out, *extra):
    return ["rlhf", "--algo", "ppo", "--model", e.lm, "--reward-model", e.rm, "--dataset",
            e.chat, "--output-dir", out, "--max-steps", "1", "--rollout-batch-size", "4",
            "--max-new-tokens", "4", "--per-device-train-batch-size", "4", "--report-to",
            "none", *extra]


def grpo(e, out, *extra):
    return ["rlhf", "--algo", "grpo", "--model", e.lm, "--dataset", e.plain, "--output-dir",
            out, "--max-steps", "2", "--num-generations", "2", "--max-completion-length", "4",
            "--per-device-train-batch-size", "4", "--report-to", "none", *extra]


def yaml_file(e, name, text):
    path = e.dir / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def finished_run(e, out):
    """A finished DPO run in ``out`` (made once per case that needs it)."""
    out.mkdir(parents=True)
    (out / "align_config.yaml").write_text("algo: dpo\n")
    (out / "final_metrics.json").write_text("{}")
    (out / "model.safetensors").write_bytes(b"x")
    return out


# id -> (argv(env, out), words the error line must contain)
CASES = {
    # --- the cases ------------------------------------------------------------------
    "output_dir_is_the_model": (lambda e, o: dpo(e, e.lm), "is the --model directory"),
    "output_dir_inside_the_model": (lambda e, o: dpo(e, o) + ["--output-dir", e.lm / "out"],
                                    "is inside the --model directory"),
    "output_dir_is_the_reward_model": (lambda e, o: ppo(e, o) + ["--output-dir", e.rm],
                                       "is the --reward-model directory"),
    "rerun_into_a_finished_run": (lambda e, o: dpo(e, finished_run(e, o)),
                                  "holds a finished run"),
    "model_without_tokenizer_files": (lambda e, o: dpo(e, o) + ["--model", e.notok],
                                      "no tokenizer files"),
    "policy_as_reward_model": (lambda e, o: ppo(e, o) + ["--reward-model", e.lm],
                               "score head"),
    "negative_epochs": (lambda e, o: dpo(e, o, "--num-train-epochs", "-1"),
                        "--num-train-epochs must be in (0, inf)"),
    "warmup_ratio_above_one": (lambda e, o: dpo(e, o, "--warmup-ratio", "5"),
                               "--warmup-ratio must be in [0, 1)"),
    "negative_weight_decay": (lambda e, o: dpo(e, o, "--weight-decay", "-0.1"),
                              "--weight-decay must be in [0, inf)"),
    "save_total_limit_negative": (lambda e, o: dpo(e, o, "--save-total-limit", "-1"),
                                  "--save-total-limit must be in [1, inf)"),
    "ppo_learning_rate_zero": (lambda e, o: ppo(e, o, "--learning-rate", "0"),
                               "--learning-rate must be in (0, inf)"),
    "kl_coef_nan": (lambda e, o: ppo(e, o, "--kl-coef", "nan"),
                    "--kl-coef must be a finite number"),
    "temperature_nan": (lambda e, o: ppo(e, o, "--temperature", "nan"),
                        "--temperature must be a finite number"),
    "negative_learning_rate": (lambda e, o: dpo(e, o, "--learning-rate", "-1e-5"),
                               "--learning-rate must be in (0, inf)"),
    "yaml_max_steps_not_an_integer": (
        lambda e, o: dpo(e, o) + ["--config", yaml_file(e, "f.yaml", "max_steps: 2.9\n")],
        "max_steps = 2.9 is not a valid int"),
    "yaml_duplicate_key": (
        lambda e, o: dpo(e, o) + ["--config", yaml_file(e, "d.yaml", "beta: 0.1\nbeta: 0.5\n")],
        "key 'beta' appears twice (lines 1 and 2)"),
    "read_only_output_dir": (lambda e, o: dpo(e, o), "read-only file system"),
    "plugin_calls_sys_exit": (lambda e, o: grpo(e, o, "--reward-fn", f"{e.plugins}:quits"),
                              "SystemExit"),
    "plugin_returns_only_none": (
        lambda e, o: grpo(e, o, "--reward-fn", f"{e.plugins}:abstains"),
        "returned None for all"),
    "ppo_without_chat_template": (lambda e, o: ppo(e, o) + ["--model", e.nochat],
                                  "no chat template"),
    "grpo_without_chat_template": (lambda e, o: grpo(e, o) + ["--model", e.nochat, "--dataset",
                                                             e.chat, "--reward-funcs", "length",
                                                             "--length-target", "3"],
                                   "no chat template"),
    # --- their neighbours -------------------------------------------------------------------
    "max_steps_not_an_integer": (lambda e, o: dpo(e, o, "--max-steps", "2.9"),
                                 "'2.9' is not a valid integer"),
    "zero_batch": (lambda e, o: dpo(e, o, "--per-device-train-batch-size", "0"),
                   "--per-device-train-batch-size must be in [1, inf)"),
    "lora_dropout_one": (lambda e, o: dpo(e, o, "--lora", "--lora-dropout", "1"),
                         "--lora-dropout must be in [0, 1)"),
    "eval_split_one": (lambda e, o: dpo(e, o, "--eval-split", "1"),
                       "--eval-split must be in [0, 1)"),
    "beta_inf": (lambda e, o: dpo(e, o, "--beta", "inf"), "--beta must be a finite number"),
    "learning_rate_nan": (lambda e, o: dpo(e, o, "--learning-rate", "nan"),
                          "--learning-rate must be a finite number"),
    "negative_seed": (lambda e, o: dpo(e, o, "--seed", "-1"), "--seed must be in"),
    "negative_max_grad_norm": (lambda e, o: dpo(e, o, "--max-grad-norm", "-1"),
                               "--max-grad-norm must be in [0, inf)"),
    "zero_max_length": (lambda e, o: dpo(e, o, "--max-length", "0"),
                        "--max-length must be in [1, inf)"),
    "health_patience_zero": (lambda e, o: dpo(e, o, "--health-patience", "0"),
                             "--health-patience must be in [1, inf)"),
    "rollback_factor_one": (lambda e, o: dpo(e, o, "--rollback-lr-factor", "1"),
                            "--rollback-lr-factor must be in (0, 1)"),
    "yaml_bool_for_int": (
        lambda e, o: dpo(e, o) + ["--config", yaml_file(e, "b.yaml", "max_steps: true\n")],
        "max_steps = True is not a valid int"),
    "yaml_nan_beta": (
        lambda e, o: dpo(e, o) + ["--config", yaml_file(e, "n.yaml", "beta: .nan\n")],
        "--beta must be a finite number"),
    "yaml_duplicate_key_spelt_two_ways": (
        lambda e, o: dpo(e, o) + ["--config", yaml_file(
            e, "k.yaml", "max_steps: 2\nlearning_rate: 1e-5\nmax-steps: 3\n")],
        "key 'max_steps' appears twice (lines 1 and 3)"),
    "yaml_not_utf8": (
        lambda e, o: dpo(e, o) + ["--config", yaml_file(e, "u.yaml", b"beta: \xff\xfe\n")],
        "not valid YAML"),
    "yaml_broken": (lambda e, o: dpo(e, o) + ["--config", yaml_file(e, "x.yaml", "beta: [1,\n")],
                    "not valid YAML"),
    "resume_without_checkpoint": (lambda e, o: dpo(e, o, "--resume"),
                                  "no complete checkpoint"),
    "resume_only_incomplete": (
        lambda e, o: (Path(o) / "checkpoint-2").mkdir(parents=True) or dpo(e, o, "--resume"),
        "only incomplete ones: checkpoint-2"),
    "resume_and_overwrite": (lambda e, o: dpo(e, o, "--resume", "--overwrite-output-dir"),
                             "choose one"),
    "allow_change_without_resume": (lambda e, o: dpo(e, o, "--resume-allow-change", "beta"),
                                    "applies only with --resume"),
    "output_dir_is_a_file": (lambda e, o: dpo(e, e.pairs) + ["--output-dir", e.pairs],
                             "is a file, not a directory"),
    "output_dir_not_empty": (
        lambda e, o: (Path(o).mkdir(parents=True), (Path(o) / "notes.txt").write_text("mine"))
        and dpo(e, o), "is not empty (notes.txt"),
    "model_without_weights": (lambda e, o: dpo(e, o) + ["--model", e.noweights],
                              "no .safetensors weights"),
    "model_is_a_data_file": (lambda e, o: dpo(e, o) + ["--model", e.pairs], "cannot load"),
    "model_is_not_gguf": (lambda e, o: (e.dir / "fake.gguf").write_bytes(b"PK\x03\x04 a zip")
                          and dpo(e, o) + ["--model", e.dir / "fake.gguf"], "not a GGUF file"),
    "missing_model": (lambda e, o: dpo(e, o) + ["--model", e.dir / "nope"],
                      "no such file or directory"),
    "missing_dataset": (lambda e, o: dpo(e, o) + ["--dataset", e.dir / "nope.jsonl"], "nope"),
    "missing_deepspeed_config": (lambda e, o: dpo(e, o, "--deepspeed", "nope.json"),
                                 "no such file"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_line_with_exit_2(case, env, tmp_path, capsys, monkeypatch):
    argv_of, words = CASES[case]
    out = tmp_path / "out"
    if case == "read_only_output_dir":
        def read_only(self, *a, **k):
            raise OSError(errno.EROFS, "Read-only file system", str(self))

        monkeypatch.setattr(Path, "mkdir", read_only)
    argv = argv_of(env, out)
    code, _, err = run_cli(argv, capsys)
    assert code == 2, (case, code, err[-3000:])
    line = error_line(err)
    assert words in line, (case, line)
    if case not in ("rerun_into_a_finished_run", "output_dir_not_empty",
                    "resume_only_incomplete", "output_dir_is_a_file"):
        assert not out.exists() or not any(out.iterdir()), \
            f"{case}: left {sorted(p.name for p in out.iterdir())}"


@pytest.mark.parametrize("code, words", [(errno.EROFS, "is on a read-only file system"),
                                           (errno.EACCES, "permission denied in")])
def test_a_refused_output_dir_on_a_small_disk_is_not_called_full(code, words, env, tmp_path,
                                                                 capsys, monkeypatch):
    """A read-only mount reports little free space (1 MB here): the error must say what the
    OS said, not "no space left on the disk"."""
    import align.errors

    out, mkdir = tmp_path / "out", Path.mkdir

    def refused(self, *a, **k):
        if self == out:  # only the output dir (the data layer's work dirs are elsewhere)
            raise OSError(code, os.strerror(code), str(self))
        return mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", refused)
    monkeypatch.setattr(align.errors, "_free_space", lambda path: 1 << 20)
    status, _, err = run_cli(dpo(env, out), capsys)
    line = error_line(err)
    assert status == 2 and words in line and "the output directory" in line, line
    assert "no space" not in line, line


def test_a_run_that_fails_before_training_leaves_no_directory(env, tmp_path, capsys):
    out = tmp_path / "deep" / "out"
    code, _, err = run_cli(dpo(env, out) + ["--model", env.notok, "--allow-new-score-head"],
                           capsys)
    assert code == 2 and "no tokenizer files" in err
    assert not (tmp_path / "deep").exists()  # nor the parent it would have made
