"""The CLI: exit codes, no tracebacks, flag ownership, YAML resolution, dry runs, fast help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import run_cli, write_jsonl


def test_help_does_not_import_torch():
    code = ("import sys; from align.cli import cli; from click.testing import CliRunner; "
            "r = CliRunner().invoke(cli, ['rlhf', '--help']); assert r.exit_code == 0, r.output; "
            "assert 'torch' not in sys.modules and 'trl' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_algos_lists_all(capsys):
    code, out, _ = run_cli(["algos"], capsys)
    assert code == 0
    for name in ("ppo", "dpo", "kto", "cpo", "orpo", "simpo", "grpo", "rm", "sft"):
        assert f"\n{name} " in out


def test_algos_detail_shows_defaults_and_sources(capsys):
    code, out, _ = run_cli(["algos", "dpo"], capsys)
    assert code == 0 and "--rpo-alpha" in out and "ms-swift RLHF guide" in out


def test_validate_ok(tmp_path, capsys, pairs_file):
    code, out, _ = run_cli(["data", "validate", pairs_file, "--format", "pairwise"], capsys)
    assert code == 0 and out.startswith("OK ") and "64 records" in out


def test_validate_format_from_algo(capsys, pairs_file):
    code, out, _ = run_cli(["data", "validate", pairs_file, "--algo", "dpo"], capsys)
    assert code == 0 and "pairwise" in out


def test_validate_bad_file_exits_2_without_traceback(tmp_path, capsys):
    p = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "completion": "c", "label": 1}])
    code, out, err = run_cli(["data", "validate", p, "--format", "unpaired"], capsys)
    assert code == 2
    assert "line 1" in err and "'label'" in err and "Traceback" not in err + out


def test_validate_missing_file(tmp_path, capsys):
    code, _, err = run_cli(["data", "validate", tmp_path / "x.jsonl", "--format", "sft"], capsys)
    assert code == 2 and "no such file" in err


def test_validate_needs_a_format(capsys, pairs_file):
    code, _, err = run_cli(["data", "validate", pairs_file], capsys)
    assert code == 2 and "--format" in err


def test_validate_subprocess_has_no_traceback(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"prompt": "\xff"}\n')
    r = subprocess.run([sys.executable, "-m", "align", "data", "validate", str(p),
                        "--format", "prompt"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "line 1" in r.stderr


def test_inspect(capsys, pairs_file):
    code, out, _ = run_cli(["data", "inspect", pairs_file, "--format", "pairwise", "-n", "1"],
                           capsys)
    assert code == 0 and "columns: prompt, chosen, rejected" in out


def test_unknown_algo(capsys, tiny_lm, pairs_file):
    code, _, err = run_cli(["rlhf", "--algo", "dop", "--model", tiny_lm, "--dataset",
                            pairs_file], capsys)
    assert code == 2 and "Did you mean 'dpo'" in err


def test_flag_of_another_algorithm_is_named(capsys, tiny_lm, pairs_file):
    code, _, err = run_cli(["rlhf", "--algo", "kto", "--model", tiny_lm, "--dataset",
                            pairs_file, "--rpo-alpha", "1.0", "--dry-run"], capsys)
    assert code == 2 and "--rpo-alpha is not used by --algo kto" in err and "dpo" in err


def test_health_flags_only_for_algorithms_with_detectors(capsys, tiny_lm, tmp_path):
    data = write_jsonl(tmp_path / "s.jsonl", [{"prompt": "q", "completion": "a"}])
    code, _, err = run_cli(["rlhf", "--algo", "sft", "--model", tiny_lm, "--dataset", data, "--on-collapse",
                            "stop", "--dry-run"], capsys)
    assert code == 2 and "--on-collapse is not used by --algo sft" in err and "ppo" in err


def test_invalid_choice_value(capsys, tiny_lm, pairs_file):
    code, _, err = run_cli(["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset",
                            pairs_file, "--loss-type", "sigmoid,nope", "--dry-run"], capsys)
    assert code == 2 and "choose from" in err


def test_dry_run_validates_and_prints_plan(capsys, tiny_lm, pairs_file):
    code, out, _ = run_cli(["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset",
                            pairs_file, "--lora", "--dry-run"], capsys)
    assert code == 0
    assert "rpo_alpha: 1.0" in out and "LoRA r=8" in out and "adapters disabled" in out
    assert "no model was loaded" in out


def test_dry_run_rejects_bad_data_before_models(tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "chosen": "a"}])
    code, _, err = run_cli(["rlhf", "--algo", "dpo", "--model", "org/some-model", "--dataset",
                            bad, "--dry-run"], capsys)
    assert code == 2 and "line 1" in err and "'rejected'" in err


def test_ppo_requires_a_reward_source(capsys, tiny_lm, tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "hi"}])
    code, _, err = run_cli(["rlhf", "--algo", "ppo", "--model", tiny_lm, "--dataset", prompts,
                            "--dry-run"], capsys)
    assert code == 2 and "no reward: give --reward-model DIR, --reward-funcs" in err


def test_reward_model_not_used_by_dpo(capsys, tiny_lm, tiny_rm, pairs_file):
    code, _, err = run_cli(["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", pairs_file,
                            "--reward-model", tiny_rm, "--dry-run"], capsys)
    assert code == 2 and "not used by --algo dpo" in err


def test_qlora_without_gpu_is_a_clear_error(capsys, monkeypatch, tiny_lm, pairs_file, tmp_path):
    from align import runner

    monkeypatch.setattr(runner, "cuda_available", lambda: False)
    args = ["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", pairs_file, "--qlora",
            "--output-dir", tmp_path / "out"]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "--qlora needs a CUDA GPU" in err
    assert not (tmp_path / "out").exists()
    # a dry run validates the same command and says what would stop the real run
    code, out, err = run_cli(args + ["--dry-run"], capsys)
    assert code == 0, err
    assert "warning: on this machine: --qlora needs a CUDA GPU" in err
    assert "a real run on this machine would stop" in out


def test_missing_model_path(capsys, tmp_path, pairs_file):
    code, _, err = run_cli(["rlhf", "--algo", "dpo", "--model", tmp_path / "nope", "--dataset",
                            pairs_file, "--dry-run"], capsys)
    assert code == 2 and "--model" in err and "no such file" in err


def test_yaml_config_with_kebab_keys_and_cli_override(tmp_path, capsys, tiny_lm, pairs_file):
    cfg = tmp_path / "r.yaml"
    cfg.write_text(f"algo: dpo\nmodel: {tiny_lm}\ndataset: {pairs_file}\nrpo-alpha: 0.5\n"
                   "beta: 0.2\nlora: true\n")
    code, out, _ = run_cli(["rlhf", "--config", cfg, "--beta", "0.3", "--dry-run"], capsys)
    assert code == 0, out
    assert "rpo_alpha: 0.5" in out and "beta: 0.3" in out and "lora: True" in out


def test_yaml_unknown_key_suggests(tmp_path, capsys, tiny_lm, pairs_file):
    cfg = tmp_path / "r.yaml"
    cfg.write_text(f"algo: dpo\nmodel: {tiny_lm}\ndataset: {pairs_file}\nlearning_rat: 1e-5\n")
    code, _, err = run_cli(["rlhf", "--config", cfg, "--dry-run"], capsys)
    assert code == 2 and "did you mean 'learning_rate'" in err


def test_yaml_wrong_type(tmp_path, capsys, tiny_lm, pairs_file):
    cfg = tmp_path / "r.yaml"
    cfg.write_text(f"algo: dpo\nmodel: {tiny_lm}\ndataset: {pairs_file}\nbeta: high\n")
    code, _, err = run_cli(["rlhf", "--config", cfg, "--dry-run"], capsys)
    assert code == 2 and "beta" in err and "float" in err


def test_rlhf_help_for_one_algo_hides_other_flags(capsys):
    code, out, _ = run_cli(["rlhf", "--algo", "kto", "--help"], capsys)
    assert code == 0 and "--desirable-weight" in out and "--rpo-alpha" not in out


def test_help_shows_the_chosen_algorithms_default_for_shared_flags(capsys):
    code, out, _ = run_cli(["rlhf", "--algo", "simpo", "--help"], capsys)
    flat = " ".join(out.split())
    assert code == 0 and "[default: 2.0]" in flat and "dpo 0.1" not in flat


def test_sft_command_runs_sft_only(capsys, tiny_lm, tmp_path):
    data = write_jsonl(tmp_path / "s.jsonl", [{"prompt": "q", "completion": "a"}])
    code, out, _ = run_cli(["sft", "--model", tiny_lm, "--dataset", data, "--dry-run"], capsys)
    assert code == 0 and "algo: sft" in out


def test_existing_checkpoints_need_resume(tmp_path, capsys, tiny_lm, pairs_file):
    (tmp_path / "out" / "checkpoint-5").mkdir(parents=True)
    code, _, err = run_cli(["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", pairs_file,
                            "--output-dir", tmp_path / "out"], capsys)
    assert code == 2 and "--resume" in err


def test_unexpected_error_has_no_traceback_unless_debug(monkeypatch, capsys):
    from align import cli as cli_mod
    from align.cli import run

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(run, "get_algo", boom)
    code, _, err = run_cli(["algos", "dpo"], capsys)
    assert code == 1 and "kaboom" in err and "--debug" in err and "Traceback" not in err
    with pytest.raises(RuntimeError):
        cli_mod.main(["algos", "dpo", "--debug"])
