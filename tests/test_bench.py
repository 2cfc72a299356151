"""scripts/bench.py: the CPU smoke run finishes and its JSON holds every field, with units.

The smoke run checks that the benchmark works end to end (align's DPO and PPO paths, plain TRL
and plain generate, the report); its numbers are no evidence of speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

OK_DPO = ("build_s", "tokens_per_step", "steps", "seconds", "tokens_per_s", "mfu",
          "peak_memory_gb", "command", "cell_s")
OK_ENGINE = ("warmup_s", "tokens", "seconds", "tokens_per_s", "peak_memory_gb",
             "speedup_vs_plain")
OK_STEP = ("steps", "rollout_s", "score_s", "train_s", "step_s", "response_tokens",
           "peak_memory_gb")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--smoke",
                           "--work-dir", str(tmp / "work"), "--out", str(out)],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_smoke_run_records_the_machine_and_the_command(smoke):
    result, _ = smoke
    assert result["smoke"] is True and "not performance evidence" in result["note"]
    assert result["command"].startswith("python scripts/bench.py --smoke")
    assert result["device"]["kind"] == "cpu" and result["device"]["peak_bf16_tflops"] is None
    for package in ("python", "torch", "transformers", "trl", "peft", "align_commit"):
        assert result["versions"][package], package
    assert result["shape_config"]["vocab_size"] == 1024 and result["params"] > 0
    assert {"tokens_per_s", "mfu", "*_gb", "*_s"} <= set(result["units"])


def test_smoke_dpo_compares_align_with_plain_trl_in_every_mode(smoke):
    rows = smoke[0]["dpo"]
    assert {(r["mode"], r["impl"], r["variant"]) for r in rows} == {
        (m, "trl", "defaults") for m in ("full", "lora", "qlora")} | {
        (m, "align", v) for m in ("full", "lora", "qlora") for v in ("defaults", "precompute")}
    for r in rows:
        if r["mode"] == "qlora":  # bitsandbytes 4-bit needs CUDA
            assert r["status"] == "skipped" and "CUDA" in r["reason"]
            continue
        assert r["status"] == "ok", r
        for key in OK_DPO:
            assert key in r, (r["mode"], r["impl"], key)
        assert r["tokens_per_step"] == 2 * 2 * (12 + 12)  # 2 pairs, two sequences each
        assert r["tokens_per_s"] > 0 and r["mfu"] is None and r["peak_memory_gb"] is None
        if r["impl"] == "align":
            assert r["speedup_vs_trl"] > 0 and r["command"].startswith("align rlhf --algo dpo")


def test_smoke_ppo_times_rollout_engines_and_the_step_split(smoke):
    rows = smoke[0]["ppo"]
    assert [r["mode"] for r in rows] == ["full", "lora", "qlora"]
    for r in rows[:2]:
        assert r["status"] == "ok", r
        engines = r["rollout"]
        for name in ("plain_generate", "align_hf"):
            for key in OK_ENGINE:
                assert key in engines[name], (r["mode"], name, key)
            assert engines[name]["tokens"] == 4 * 8  # batch x new tokens
        assert engines["align_hf_compiled"]["status"] == "skipped"
        step = r["step"]
        for key in OK_STEP:
            assert key in step, (r["mode"], key)
        assert step["rollout_s"] > 0 and step["score_s"] > 0 and step["train_s"] > 0
        assert step["step_s"] >= step["rollout_s"] + step["score_s"] + step["train_s"]
    assert rows[2]["status"] == "skipped"


def test_smoke_prints_the_three_tables(smoke):
    out = smoke[1]
    assert "| full | TRL defaults |" in out and "| lora | align precompute |" in out
    assert "| full | plain_generate |" in out and "| lora | align_hf |" in out
    assert "| mode | rollout s | scoring s | training s | step s | peak GB | status |" in out


def test_peak_flops_table_tells_h100_pcie_from_sxm():
    from benchlib.device import mfu, peak_tflops

    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops("NVIDIA A10G") is None and peak_tflops("Some new GPU") is None
    # 6 x 0.5e9 params x 35k tokens/s = 1.05e14 FLOP/s of 989e12
    assert mfu(500_000_000, 35_000, {"peak_bf16_tflops": 989.0}) == pytest.approx(0.1062, 1e-3)
    assert mfu(500_000_000, 35_000, {"peak_bf16_tflops": None}) is None


def test_data_benchmark_runs_both_sides_on_a_small_file(tmp_path):
    """scripts/bench_data.py: align data validate against datasets.load_dataset, each in its
    own process; the numbers of this 2 MB smoke run are no evidence of anything."""
    out = tmp_path / "bench_data.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_data.py"),
                           "--size-mb", "2", "--out", str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    for side in ("align", "datasets"):
        assert result[side]["rc"] == 0 and result[side]["peak_rss_gb"] > 0
    assert result["records"] > 500 and "ratio_rss" in result and "machine" in result
