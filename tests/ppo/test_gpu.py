"""GPU-only paths (skipped without CUDA): QLoRA on a 4-bit base and bf16 full fine-tuning."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import run_cli

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("flags", [["--qlora"], ["--bf16", "--offload-reward-model",
                                                 "--offload-ref-model"]])
def test_ppo_runs_on_gpu(tmp_path, capsys, tiny_sft, tiny_pref_rm, prompt_files, flags):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if "--qlora" in flags:
        pytest.importorskip("bitsandbytes")
    out = tmp_path / "gpu"
    code, _, err = run_cli(["rlhf", "--algo", "ppo", "--model", tiny_sft, "--reward-model",
                            tiny_pref_rm, "--dataset", prompt_files[0], "--eval-dataset",
                            prompt_files[1], "--output-dir", out, "--max-steps", "3",
                            "--rollout-batch-size", "16", "--max-new-tokens", "12",
                            "--actor-lr", "1e-3", "--critic-lr", "1e-3", *flags], capsys)
    assert code == 0, err
    final = json.loads((out / "final_metrics.json").read_text())
    assert final["steps"] == 3 and final["collapsed"] is False
