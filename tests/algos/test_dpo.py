"""DPO end to end through the CLI on a tiny model: the loss falls and the output loads back."""

from __future__ import annotations

import pytest

from align.metrics import read_metrics
from tests.conftest import run_cli


def _mean(xs):
    return sum(xs) / len(xs)


@pytest.mark.parametrize("rpo_alpha", ["1.0", "0"])
def test_dpo_loss_falls_and_model_loads_back(tmp_path, capsys, tiny_lm, pairs_file, rpo_alpha):
    out = tmp_path / "dpo"
    code, stdout, err = run_cli([
        "rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", pairs_file,
        "--output-dir", out, "--max-steps", "24", "--learning-rate", "2e-3",
        "--per-device-train-batch-size", "8", "--rpo-alpha", rpo_alpha, "--beta", "0.5",
        "--lr-scheduler-type", "constant", "--warmup-ratio", "0", "--save-steps", "100",
    ], capsys)
    assert code == 0, err
    rows = [r for r in read_metrics(out) if "loss" in r]
    losses = [r["loss"] for r in rows]
    assert len(losses) >= 20
    assert _mean(losses[-4:]) < _mean(losses[:4]) - 0.05, losses
    if rpo_alpha == "0":
        assert _mean([r["rewards/margins"] for r in rows[-4:]]) > 0

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True)
    assert model.config.model_type == "qwen2"
    assert (out / "align_config.yaml").exists()
