"""recipes/: every script and every --config YAML passes --dry-run without loading a model; each
YAML is the same run as its script; the accelerate and DeepSpeed configs hold what they need.

Scripts run under bash with a recording launcher (tests/recipe_argv.py) and their align commands
are replayed in-process, so the whole directory checks in seconds; a few scripts also run end to
end with LAUNCH=python, as a user's CI would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from align.registry import ALGOS
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
SCRIPTS = sorted(RECIPES.glob("*.sh"))
YAMLS = sorted((RECIPES / "yaml").glob("*.yaml"))
RECORDER = Path(__file__).resolve().parent / "recipe_argv.py"
# PPO recipes read REWARD_MODEL (a model trained by an earlier recipe); a hub id stands in.
ENV = {"REWARD_MODEL": "Qwen/Qwen2.5-1.5B-Instruct"}


def record(script: Path, tmp_path: Path, *args: str) -> list[list[str]]:
    """Run ``script`` with a launcher that records each command; return the commands' argv."""
    log = tmp_path / f"{script.stem}.argv.jsonl"
    env = {**os.environ, **ENV, "LAUNCH": f"{sys.executable} {RECORDER}",
           "RECIPE_ARGV_LOG": str(log)}
    r = subprocess.run(["bash", str(script), *args], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    commands = [json.loads(line) for line in log.read_text().splitlines()]
    assert commands and all(c[:2] == ["-m", "align"] for c in commands), commands
    return [c[2:] for c in commands]


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fail the test if anything tries to load a model or tokenizer."""
    from align import models

    def refuse(*args, **kwargs):
        raise AssertionError("a dry run loaded a model")

    monkeypatch.setattr(models, "_from_pretrained", refuse)
    monkeypatch.setattr(models, "load_tokenizer", refuse)
    monkeypatch.chdir(ROOT)
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)


def dry_run(argv: list[str], capsys) -> tuple[str, str]:
    code, out, err = run_cli(argv, capsys)
    assert code == 0, f"align {' '.join(argv)}\n{err}"
    assert "algo: " in out and "[train]" in out  # the resolved config
    assert "dry run OK" in out and "no model was loaded" in out
    return out, err


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_recipe_passes_dry_run(script, tmp_path, capsys, no_model_loading):
    commands = record(script, tmp_path, "--dry-run")
    for argv in commands:
        assert argv[-1] == "--dry-run", argv  # "$@" is forwarded, last
        dry_run(argv, capsys)


def test_extra_arguments_reach_every_align_command(tmp_path):
    for script in (RECIPES / "dpo_lora_24gb.sh", RECIPES / "rlhf_pipeline.sh"):
        for argv in record(script, tmp_path, "--max-steps", "3", "--dry-run"):
            assert argv[-3:] == ["--max-steps", "3", "--dry-run"]


@pytest.mark.parametrize("name", ["dpo_lora_24gb", "zero3_8gpu_dpo", "rlhf_pipeline"])
def test_recipe_runs_end_to_end_with_a_python_launcher(name):
    env = {**os.environ, **ENV, "LAUNCH": sys.executable,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run(["bash", str(RECIPES / f"{name}.sh"), "--dry-run"], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("dry run OK") == (3 if name == "rlhf_pipeline" else 1)


@pytest.mark.parametrize("name", ["multinode_dpo", "multinode_ppo"])
def test_multinode_recipe_needs_rank_and_address_to_launch(tmp_path, name):
    env = {k: v for k, v in os.environ.items()
           if k not in ("LAUNCH", "MACHINE_RANK", "MAIN_PROCESS_IP")}
    r = subprocess.run(["bash", str(RECIPES / f"{name}.sh"), "--dry-run"], env=env,
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "set MACHINE_RANK" in r.stderr


def _option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_pipeline_wires_each_stage_to_the_previous_ones_output(tmp_path):
    sft, merge, rm, ppo = record(RECIPES / "rlhf_pipeline.sh", tmp_path)  # no --dry-run
    out = "runs/rlhf_pipeline"
    assert sft[0] == "sft" and _option(sft, "--output-dir") == f"{out}/sft"
    assert merge[:2] == ["merge-lora", f"{out}/sft"]
    assert _option(merge, "--output-dir") == f"{out}/sft-merged"
    assert _option(rm, "--algo") == "rm" and _option(rm, "--model") == f"{out}/sft-merged"
    assert _option(rm, "--output-dir") == f"{out}/rm"
    assert _option(ppo, "--algo") == "ppo" and _option(ppo, "--model") == f"{out}/sft-merged"
    assert _option(ppo, "--reward-model") == f"{out}/rm"


def test_pipeline_dry_run_stands_the_base_model_in_for_unbuilt_stages(tmp_path):
    sft, rm, ppo = record(RECIPES / "rlhf_pipeline.sh", tmp_path, "--dry-run")  # no merge
    base = _option(sft, "--model")
    assert _option(rm, "--model") == base and _option(ppo, "--model") == base
    assert _option(ppo, "--reward-model") == base


def test_every_algorithm_has_a_24gb_lora_and_a_16gb_qlora_recipe():
    names = {p.stem for p in SCRIPTS}
    for algo in ALGOS:
        for recipe in (f"{algo}_lora_24gb", f"{algo}_qlora_16gb"):
            assert recipe in names, recipe
            assert (RECIPES / "yaml" / f"{recipe}.yaml").is_file(), recipe
    for algo in ("dpo", "sft", "rm", "grpo", "ppo"):
        assert {f"zero2_8gpu_{algo}", f"zero3_8gpu_{algo}"} <= names
    assert "multinode_ppo" in names


HEADER = ("# Hardware:", "# Tested:", "# Memory:", "# Time:", "# Launch:")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_recipe_header_and_conventions(script):
    text = script.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    for field in HEADER:
        assert field in text, f"{script.name} lacks {field}"
    assert "dry run only" in text  # honest: no GPU run has been made
    for field in ("# Memory:", "# Time:"):
        line = next(ln for ln in text.splitlines() if ln.startswith(field))
        assert "estimate" in line or "estimates" in text, line
    assert "set -euo pipefail" in text and '"$@"' in text
    assert re.search(r'MODEL="\$\{MODEL:-', text)  # the model is an env override
    assert "data_formats/" in text  # a local example is the default data
    assert os.access(script, os.X_OK)


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_every_yaml_recipe_passes_dry_run(path, capsys, no_model_loading):
    algo = yaml.safe_load(path.read_text())["algo"]
    command = "sft" if algo == "sft" else "rlhf"
    overrides = ["--reward-model", ENV["REWARD_MODEL"]] if needs_reward_model(path) else []
    dry_run([command, "--config", str(path.relative_to(ROOT)), *overrides, "--dry-run"], capsys)


def needs_reward_model(path: Path) -> bool:
    """A PPO recipe scored by a reward model (REWARD_MODEL), not by rule rewards only."""
    y = yaml.safe_load(path.read_text())
    return y["algo"] == "ppo" and not (y.get("reward_funcs") or y.get("reward_fn"))


def _resolved(out: str) -> dict[str, str]:
    """The printed config as {key: value}, with paths made absolute (YAML paths are relative
    to the repository root, scripts' to their own directory)."""
    values = {}
    for line in out.split("\ndata: ")[0].splitlines():
        m = re.match(r"^  (\w+): (.*)$", line)
        if m:
            key, value = m.groups()
            if key in ("dataset", "deepspeed") and value != "None":
                value = repr(str((ROOT / value.strip("'")).resolve()))
            values[key] = value
    return values


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_yaml_recipe_is_the_same_run_as_its_script(path, tmp_path, capsys, no_model_loading):
    (argv,) = record(RECIPES / f"{path.stem}.sh", tmp_path, "--dry-run")
    script_out, _ = dry_run(argv, capsys)
    command = argv[0]
    overrides = ["--reward-model", ENV["REWARD_MODEL"]] if needs_reward_model(path) else []
    yaml_out, _ = dry_run([command, "--config", str(path.relative_to(ROOT)), *overrides,
                           "--dry-run"], capsys)
    assert _resolved(yaml_out) == _resolved(script_out)


def test_every_script_has_a_yaml_twin_except_the_pipeline():
    assert {p.stem for p in SCRIPTS} - {p.stem for p in YAMLS} == {"rlhf_pipeline"}


# --- launch configs -------------------------------------------------------------------------

# accelerate refuses these next to a DeepSpeed JSON config (DeepSpeedPlugin's config checks).
IGNORED_NEXT_TO_JSON = {"gradient_accumulation_steps", "gradient_clipping", "zero_stage",
                        "offload_optimizer_device", "offload_param_device",
                        "offload_param_nvme_path", "offload_optimizer_nvme_path",
                        "zero3_save_16bit_model"}


@pytest.mark.parametrize("path", sorted((RECIPES / "deepspeed").glob("*.json")),
                         ids=lambda p: p.name)
def test_deepspeed_configs_leave_batch_and_precision_to_align(path):
    config = json.loads(path.read_text())
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                "train_batch_size", "gradient_clipping"):
        assert config[key] == "auto", key  # filled from align's flags by the HF trainer
    assert config["bf16"]["enabled"] == "auto" and config["fp16"]["enabled"] == "auto"
    stage = int(path.stem[-1])
    assert config["zero_optimization"]["stage"] == stage
    if stage == 3:
        # save_model writes whole 16-bit weights instead of shards needing zero_to_fp32.py
        assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


@pytest.mark.parametrize("path", sorted((RECIPES / "accelerate").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_accelerate_configs_load_as_accelerate_reads_them(path):
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(path))  # raises on unknown keys
    raw = yaml.safe_load(path.read_text())
    if config.distributed_type.value == "DEEPSPEED":
        assert not IGNORED_NEXT_TO_JSON & set(config.deepspeed_config)
        assert raw.get("mixed_precision") in (None, "no")
        assert config.deepspeed_config["zero3_init_flag"] is ("zero3" in path.stem)
        assert config.num_processes == 8 * config.num_machines
    else:
        assert config.num_processes == 1


def test_scripts_name_existing_launch_configs():
    for script in SCRIPTS:
        text = script.read_text(encoding="utf-8")
        for ref in re.findall(r"\$HERE/((?:accelerate|deepspeed)/[\w.]+)", text):
            assert (RECIPES / ref).is_file(), f"{script.name} names missing {ref}"


def test_recipes_readme_lists_every_recipe():
    readme = (RECIPES / "README.md").read_text(encoding="utf-8")
    for script in SCRIPTS:
        assert script.name in readme, script.name
