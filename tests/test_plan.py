"""Pre-training checks: configuration errors stop dry and real runs alike (exit 2); what the
machine lacks (GPU, packages) stops a real run but is only a warning in a dry run; each
algorithm's own checks (AlgoSpec.check) run before any model loads, in dry runs too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from align.plan import PlanReport
from tests.conftest import run_cli, write_jsonl

HUB_MODEL = "Qwen/Qwen2.5-7B-Instruct"  # a hub id: checked for shape only, never downloaded
EXAMPLES = Path(__file__).resolve().parents[1] / "data_formats"


@pytest.fixture
def no_gpu_no_packages(monkeypatch):
    """This machine as CI sees it: no CUDA GPU, none of the optional GPU packages."""
    from align import plan, runner

    monkeypatch.setattr(runner, "cuda_available", lambda: False)
    monkeypatch.setattr(plan, "cuda_available", lambda: False)
    monkeypatch.setattr(runner, "has_package", lambda name: False)
    monkeypatch.setattr(plan, "has_package", lambda name: False)


@pytest.fixture
def prompts(tmp_path):
    return write_jsonl(tmp_path / "p.jsonl", [{"prompt": "1+1=", "solution": "2"},
                                              {"prompt": "2+2=", "solution": "4"}])


@pytest.fixture
def ds_json(tmp_path):
    def make(config):
        path = tmp_path / "ds.json"
        path.write_text(config if isinstance(config, str) else json.dumps(config))
        return path
    return make


def dry(args, capsys):
    return run_cli(["rlhf", *map(str, args), "--dry-run"], capsys)


def test_report_turns_machine_issues_into_warnings_or_one_error():
    from align.errors import AlignError

    report = PlanReport()
    report.machine_issue("no GPU")
    report.machine_issue("no bitsandbytes")
    assert report.warnings() == ["warning: on this machine: no GPU; a real run here would stop",
                                 "warning: on this machine: no bitsandbytes; a real run here "
                                 "would stop"]
    with pytest.raises(AlignError, match="no GPU\n  also: no bitsandbytes"):
        report.raise_machine_issues()
    PlanReport().raise_machine_issues()  # nothing to raise


@pytest.mark.parametrize("flags, issue", [
    (["--qlora"], "--qlora needs a CUDA GPU"),
    (["--qlora"], "--qlora needs bitsandbytes"),
    (["--fp16"], "--fp16 needs a CUDA GPU"),
    (["--use-liger-kernel"], "--use-liger-kernel needs a CUDA GPU"),
    (["--use-liger-kernel"], "--use-liger-kernel needs liger-kernel: pip install liger-kernel"),
    (["--attn-implementation", "flash_attention_2"],
     "--attn-implementation flash_attention_2 needs a CUDA GPU"),
    (["--attn-implementation", "flash_attention_2"],
     "--attn-implementation flash_attention_2 needs flash-attn"),
])
def test_machine_issues_warn_in_a_dry_run(capsys, no_gpu_no_packages, pairs_file, flags, issue):
    code, out, err = dry(["--algo", "dpo", "--model", HUB_MODEL, "--dataset", pairs_file,
                          *flags], capsys)
    assert code == 0, err
    assert f"warning: on this machine: {issue}" in err
    assert out.rstrip().endswith("a real run on this machine would stop")


def test_deepspeed_config_is_read_and_described(capsys, no_gpu_no_packages, pairs_file, ds_json):
    ds = ds_json({"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}}})
    code, out, err = dry(["--algo", "dpo", "--model", HUB_MODEL, "--dataset", pairs_file,
                          "--deepspeed", ds], capsys)
    assert code == 0, err
    assert "DeepSpeed ZeRO stage 3, optimizer offload to cpu" in out
    assert "warning: on this machine: --deepspeed needs the deepspeed package" in err


@pytest.mark.parametrize("config, message", [
    ("{not json", "not a valid JSON file"),
    ("[1, 2]", "expected a JSON object"),
    ({"zero_optimization": {"stage": 4}}, "zero_optimization.stage must be 0, 1, 2 or 3"),
])
def test_bad_deepspeed_config_is_a_config_error(capsys, pairs_file, ds_json, config, message):
    code, _, err = dry(["--algo", "dpo", "--model", HUB_MODEL, "--dataset", pairs_file,
                        "--deepspeed", ds_json(config)], capsys)
    assert code == 2 and message in err


@pytest.mark.parametrize("flags, env, message", [
    (["--deepspeed", "{ds3}", "--offload-ref-model"], {}, "which DeepSpeed does not allow"),
    (["--deepspeed", "{ds3}", "--critic-warmup-steps", "2"], {},
     "leave --critic-warmup-steps 0 under --deepspeed"),
    (["--rollout-batch-size", "6"], {"WORLD_SIZE": "4"}, "must be divisible by the 4 processes"),
    (["--gradient-accumulation-steps", "4"], {}, "--gradient-accumulation-steps is not used"),
    (["--value-model", "./no/such/critic"], {}, "--value-model ./no/such/critic: no such file"),
])
def test_ppo_refusals_stop_a_dry_run(capsys, monkeypatch, prompts, ds_json, flags, env,
                                     message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    ds3 = ds_json({"zero_optimization": {"stage": 3}})
    flags = [f.format(ds3=ds3) for f in flags]
    code, _, err = dry(["--algo", "ppo", "--model", HUB_MODEL, "--reward-model", HUB_MODEL,
                        "--dataset", prompts, *flags], capsys)
    assert code == 2 and message in err, err


def test_ppo_plan_names_the_critic_and_the_batch(capsys, prompts):
    code, out, err = dry(["--algo", "ppo", "--model", HUB_MODEL, "--reward-model", "org/rm",
                          "--dataset", prompts, "--lora", "--rollout-batch-size", "2"], capsys)
    assert code == 0, err
    assert f"critic: a LoRA adapter on the policy's base ({HUB_MODEL}) with a value head" in out
    assert "reward model: org/rm (frozen, its own copy)" in out
    assert "ppo: 1 steps of 2 prompts (2 in the data)" in out
    assert "actor lr 5e-06, critic lr 9e-05 (size unknown: OpenRLHF" in out
    code, out, err = dry(["--algo", "ppo", "--model", HUB_MODEL, "--reward-model", "org/rm",
                          "--dataset", prompts, "--lora", "--critic-base", "reward-model",
                          "--rollout-batch-size", "2"], capsys)
    assert "critic: a LoRA adapter on org/rm" in out
    assert "reward model: org/rm: the critic's base with its adapter disabled" in out


def test_ppo_plan_over_several_processes(capsys, monkeypatch, prompts):
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, out, err = dry(["--algo", "ppo", "--model", HUB_MODEL, "--reward-model", "org/rm",
                          "--dataset", prompts, "--rollout-batch-size", "2"], capsys)
    assert code == 0, err
    assert "ppo: 1 steps of 2 prompts over 2 processes (1 each)" in out
    assert "rollouts: 1 generate call of up to 1 prompts per process (1 prompts each)" in out


def test_ppo_plan_describes_rollout_generation(capsys, no_gpu_no_packages, prompts):
    code, out, err = dry(["--algo", "ppo", "--model", HUB_MODEL, "--reward-model", "org/rm",
                          "--dataset", prompts, "--rollout-batch-size", "2",
                          "--local-rollout-forward-batch-size", "1", "--compile-rollout"], capsys)
    assert code == 0, err
    assert "rollouts: 2 generate calls of up to 1 prompts, prompts sorted by length, static KV " \
        "cache + torch.compile (transformers generate); scoring passes of 1 sequences" in out
    assert "warning: on this machine: --compile-rollout needs a CUDA GPU" in err


def test_ppo_ptx_data_is_validated_in_a_dry_run(capsys, tmp_path, prompts):
    bad = write_jsonl(tmp_path / "ptx.jsonl", [{"prompt": "p"}])
    code, _, err = dry(["--algo", "ppo", "--model", HUB_MODEL, "--reward-model", "org/rm",
                        "--dataset", prompts, "--ptx-dataset", bad], capsys)
    assert code == 2 and "ptx.jsonl" in err and "line 1" in err


@pytest.mark.parametrize("flags, message", [
    (["--reward-funcs", "format", "--reward-weights", "1,2"],
     "--reward-weights has 2 values for 1 reward sources"),
    ([], "no reward: give --reward-model DIR"),
    (["--reward-fn", "nowhere.py:score"], "--reward-fn nowhere.py:score: no such file"),
    (["--reward-funcs", "format", "--ref-model", "org/ref"], "--ref-model is not used by --algo"),
])
@pytest.mark.parametrize("algo", ["grpo", "rloo"])
def test_online_reward_plan_errors_stop_a_dry_run(capsys, prompts, algo, flags, message):
    code, _, err = dry(["--algo", algo, "--model", HUB_MODEL, "--dataset", prompts, *flags],
                       capsys)
    assert code == 2 and message in err, err


def test_accuracy_without_solution_stops_a_dry_run(capsys, tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "1+1="}])
    code, _, err = dry(["--algo", "grpo", "--model", HUB_MODEL, "--dataset", data,
                        "--reward-funcs", "accuracy"], capsys)
    assert code == 2 and "--columns solution=" in err


def test_dry_run_never_imports_the_users_reward_code(capsys, tmp_path, prompts):
    marker = tmp_path / "imported"
    plugin = tmp_path / "mine.py"
    plugin.write_text(f"open({str(marker)!r}, 'w').close()\n"
                      "def score(prompts, completions, **kw):\n    return [0.0] * len(prompts)\n")
    code, out, err = dry(["--algo", "grpo", "--model", HUB_MODEL, "--dataset", prompts,
                          "--reward-funcs", "accuracy", "--reward-fn", f"{plugin}:score",
                          "--reward-weights", "1,0.5"], capsys)
    assert code == 0, err
    assert "rewards: accuracy x1, score x0.5" in out
    assert not marker.exists()


def test_use_vllm_is_a_machine_issue(capsys, no_gpu_no_packages, prompts):
    code, out, err = dry(["--algo", "grpo", "--model", HUB_MODEL, "--dataset", prompts,
                          "--reward-funcs", "accuracy", "--use-vllm"], capsys)
    assert code == 0, err
    assert "warning: on this machine: --use-vllm needs vLLM" in err
    assert "with vLLM (colocated)" in out


def test_kto_batch_of_one_stops_a_dry_run(capsys):
    code, _, err = dry(["--algo", "kto", "--model", HUB_MODEL, "--dataset",
                        EXAMPLES / "unpaired.jsonl", "--per-device-train-batch-size", "1"],
                       capsys)
    assert code == 2 and "at least 2" in err


def test_flag_of_another_algorithm_stops_a_dry_run(capsys, pairs_file):
    code, _, err = dry(["--algo", "simpo", "--model", HUB_MODEL, "--dataset", pairs_file,
                        "--rpo-alpha", "0.5"], capsys)
    assert code == 2 and "--rpo-alpha is not used by --algo simpo" in err


def test_plan_states_precision_learning_rate_and_batch(capsys, pairs_file):
    code, out, err = dry(["--algo", "dpo", "--model", HUB_MODEL, "--dataset", pairs_file,
                          "--lora", "--bf16", "--per-device-train-batch-size", "2",
                          "--gradient-accumulation-steps", "8"], capsys)
    assert code == 0, err
    assert "precision: bf16 mixed precision, weights loaded as bfloat16" in out
    assert "learning rate: 0.0001 (default for LoRA/QLoRA: ms-swift" in out
    assert "batch: 2 per device x 8 accumulation x 1 process = 16 pairs" in out
    assert out.rstrip().endswith("dry run OK: flags, config and data are valid; no model was "
                                 "loaded")


_PIN_PROBE = ("import json, os, sys; from align.plan import pin_cpu_math; set_ = pin_cpu_math(); "
              "import torch; print(json.dumps({'set': set_, 'env': {k: os.environ.get(k) for k "
              "in ('MKL_CBWR', 'ONEDNN_MAX_CPU_ISA', 'ATEN_CPU_CAPABILITY')}, "
              "'capability': torch.backends.cpu.get_cpu_capability(), "
              "'late': pin_cpu_math()}))")


def _pin_probe(**env: str) -> dict:
    import os
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items()
            if k not in ("MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")}
    out = subprocess.run([sys.executable, "-c", _PIN_PROBE], env={**base, **env},
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_pin_cpu_math_sets_the_avx2_path_before_torch_and_keeps_what_the_user_set():
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64") or \
            "avx2" not in Path("/proc/cpuinfo").read_text().split():
        pytest.skip("the pin applies to x86-64 CPUs with AVX2 only")
    probe = _pin_probe()
    assert probe["env"] == {"MKL_CBWR": "AVX2,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2",
                            "ATEN_CPU_CAPABILITY": "avx2"}
    assert probe["set"] == probe["env"]
    assert probe["capability"] == "AVX2"  # torch dispatched on it
    assert probe["late"] == {}  # once torch is loaded, setting them would change nothing
    mine = _pin_probe(MKL_CBWR="COMPATIBLE")
    assert mine["env"]["MKL_CBWR"] == "COMPATIBLE" and "MKL_CBWR" not in mine["set"]


# --- CPU threads from the load (align.plan.choose_threads) ----------------------------------

def test_threads_rule_takes_every_idle_core_rounded_towards_fewer():
    from align.plan import threads_for

    assert threads_for(1.9, 2) == 2  # an idle 2-core machine: both cores
    assert threads_for(1.7, 2) == 2  # 1.7 + 0.3 rounds to 2
    assert threads_for(1.6, 2) == 1  # one busy job beside us: one thread
    assert threads_for(1.0, 2) == 1
    assert threads_for(0.0, 2) == 1  # every core busy: still one thread
    assert threads_for(9.0, 8) == 8  # never more than the cores
    assert threads_for(7.8, 8, processes=2) == 4  # a launch of 2 processes shares them


def test_threads_given_or_from_omp_num_threads_win_over_the_load():
    from align.plan import choose_threads

    def never(cores):
        raise AssertionError("the load must not be measured when the count is given")

    given = choose_threads(3, env={"OMP_NUM_THREADS": "1"}, cores=2, measure=never)
    assert (given.count, given.source) == (3, "--threads")
    omp = choose_threads(None, env={"OMP_NUM_THREADS": "1"}, cores=2, measure=never)
    assert (omp.count, omp.source) == (1, "OMP_NUM_THREADS")
    assert "from OMP_NUM_THREADS" in omp.describe()


def test_threads_from_the_load_say_how_they_were_chosen():
    from align.plan import choose_threads

    idle = choose_threads(None, env={}, cores=2, measure=lambda c: (1.9, "95% idle"))
    busy = choose_threads(None, env={"OMP_NUM_THREADS": ""}, cores=2,
                          measure=lambda c: (0.9, "45% idle"))
    assert (idle.count, busy.count) == (2, 1)
    assert idle.describe() == ("2 CPU threads (chosen from the load: 1.9 of 2 cores idle "
                               "(95% idle))")


def test_idle_cores_are_measured_from_cpu_time(monkeypatch):
    from align import plan

    samples = iter([(100.0, 400.0), (190.0, 500.0)])  # 90 of 100 jiffies idle
    monkeypatch.setattr(plan, "_cpu_times", lambda: next(samples))
    idle, how = plan.idle_cores(2, window_s=0)
    assert idle == pytest.approx(1.8) and "90%" in how


def test_resolved_config_shows_the_threads_and_why(capsys, monkeypatch, pairs_file, tiny_lm):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    code, out, err = run_cli(["rlhf", "--algo", "dpo", "--model", str(tiny_lm), "--dataset",
                              str(pairs_file), "--dry-run"], capsys)
    assert code == 0, err
    assert "threads: " in out and "chosen from the load" in out
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    code, out, err = run_cli(["rlhf", "--algo", "dpo", "--model", str(tiny_lm), "--dataset",
                              str(pairs_file), "--threads", "2", "--dry-run"], capsys)
    assert code == 0, err
    assert "  threads: 2" in out and "threads: 2 CPU threads (given with --threads)" in out
_STRICT_PROBE = (
    "import json, os; from align.plan import pin_thread_invariant_math; set_ = "
    "pin_thread_invariant_math(); import torch; "
    # SmolLM2's MLP down-projection over 101 tokens: without the pin, MKL gives each thread a
    # share of the rows and rounds the edge rows of a share apart (17,369 of the 58,176
    # outputs differed between 1 and 2 threads on the CPU where this was written)
    "g = torch.Generator().manual_seed(0); x = torch.randn(101, 1536, generator=g); "
    "w = torch.randn(576, 1536, generator=g) / 40; out = {}\n"
    "for k in (1, 2, 3):\n"
    "    torch.set_num_threads(k); out[k] = torch.nn.functional.linear(x, w)\n"
    "print(json.dumps({'set': set_, 'mkl_cbwr': os.environ.get('MKL_CBWR'), "
    "'same': all(torch.equal(out[1], out[k]) for k in (2, 3)), "
    "'late': pin_thread_invariant_math()}))")


def _strict_probe(**env: str) -> dict:
    import os
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    out = subprocess.run([sys.executable, "-c", _STRICT_PROBE], env={**base, **env},
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_pin_thread_invariant_math_gives_matrix_products_the_same_bits_at_any_thread_count():
    import torch

    if not torch.backends.mkl.is_available():
        pytest.skip("the pin sets MKL's mode; this torch does not use MKL")
    probe = _strict_probe()
    assert probe["set"] == {"MKL_CBWR": "AUTO,STRICT"} and probe["mkl_cbwr"] == "AUTO,STRICT"
    assert probe["same"]
    assert probe["late"] == {}  # once torch is loaded, setting it would change nothing
    mine = _strict_probe(MKL_CBWR="COMPATIBLE")
    assert mine["set"] == {} and mine["mkl_cbwr"] == "COMPATIBLE"  # the user's choice stays


def test_training_commands_pin_thread_invariant_math_before_torch_loads(tmp_path):
    import os
    import subprocess
    import sys

    # a dry run loads no torch; what it leaves in the environment is what a real run's
    # torch would find
    code = ("import os, sys; from align.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('MKL_CBWR=' + str(os.environ.get('MKL_CBWR')), 'torch' in sys.modules)")
    data = tmp_path / "p.jsonl"
    data.write_text('{"prompt": "hi"}\n')
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    out = subprocess.run([sys.executable, "-c", code, "rlhf", "--algo", "ppo", "--model", "m",
                          "--reward-model", "r", "--dataset", str(data), "--dry-run"],
                         env=env, capture_output=True, text=True).stdout
    assert out.strip().splitlines()[-1] == "MKL_CBWR=AUTO,STRICT False"
