"""DPO end to end through the CLI on a tiny model: the loss falls and the output loads back."""

from __future__ import annotations

import pytest

from align.metrics import read_metrics
from tests.algos.conftest import FAST, assert_loss_falls, mean
from tests.conftest import run_cli


@pytest.mark.parametrize("rpo_alpha", ["1.0", "0"])
def test_dpo_loss_falls_and_model_loads_back(tmp_path, capsys, tiny_lm, pairs_file, rpo_alpha):
    out = tmp_path / "dpo"
    code, stdout, err = run_cli([
        "rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", pairs_file,
        "--output-dir", out, "--max-steps", "24", "--learning-rate", "2e-3",
        "--rpo-alpha", rpo_alpha, "--beta", "0.5", *FAST,
    ], capsys)
    assert code == 0, err
    assert_loss_falls(out)
    rows = [r for r in read_metrics(out) if "loss" in r]
    if rpo_alpha == "0":
        assert mean([r["rewards/margins"] for r in rows[-4:]]) > 0

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True)
    assert model.config.model_type == "qwen2"
    assert (out / "align_config.yaml").exists()


def test_dpo_lora_saves_an_adapter_that_loads_and_merges(tmp_path, capsys, tiny_lm, pairs_file):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "dpo-lora"
    code, stdout, err = run_cli([
        "rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", pairs_file, "--lora",
        "--output-dir", out, "--max-steps", "24", "--learning-rate", "5e-3", "--beta", "0.5",
        *FAST,
    ], capsys)
    assert code == 0, err
    assert "adapters disabled" in stdout and "align merge-lora" in stdout
    assert (out / "adapter_config.json").exists() and not (out / "model.safetensors").exists()
    assert_loss_falls(out)

    base = AutoModelForCausalLM.from_pretrained(tiny_lm)
    model = PeftModel.from_pretrained(base, out)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        adapted = model(ids).logits
        merged = model.merge_and_unload()(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(tiny_lm)(ids).logits
    assert torch.allclose(adapted, merged, atol=1e-4)
    assert not torch.allclose(merged, plain, atol=1e-4)  # the adapter changed the model


@pytest.mark.parametrize("flags,message", [
    (["--label-smoothing", "0.1"], "read only by the robust"),
    (["--loss-type", "exo_pair"], "needs --label-smoothing > 0"),
    (["--loss-type", "sigmoid,ipo", "--loss-weights", "1"], "one weight per loss"),
    (["--ld-alpha", "1.5"], "--ld-alpha must be in [0, 1]"),
])
def test_dpo_refuses_flags_trl_would_ignore(capsys, tiny_lm, pairs_file, flags, message):
    code, _, err = run_cli(["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", pairs_file,
                            *flags, "--dry-run"], capsys)
    assert code == 2 and message in err


def test_dpo_trl_losses_append_rpo_term():
    from align.algos.dpo import DPOArgs

    assert DPOArgs().trl_losses() == (["sigmoid", "sft"], [1.0, 1.0])
    assert DPOArgs(rpo_alpha=0).trl_losses() == (["sigmoid"], None)
    assert DPOArgs(loss_type="sigmoid,ipo", loss_weights="1,0.5", rpo_alpha=0.3).trl_losses() \
        == (["sigmoid", "ipo", "sft"], [1.0, 0.5, 0.3])


def test_precomputed_reference_logps_match_and_are_reused(tmp_path, capsys, tiny_lm, pairs_file,
                                                          monkeypatch):
    import shutil

    monkeypatch.setenv("ALIGN_CACHE", str(tmp_path / "cache"))
    args = ["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", pairs_file, "--max-steps",
            "3", "--save-steps", "100", "--report-to", "none", "--output-dir", tmp_path / "run"]
    logs, losses = [], []
    for extra in (["--precompute-ref-logps"], ["--precompute-ref-logps"], []):
        shutil.rmtree(tmp_path / "run", ignore_errors=True)
        code, out, err = run_cli(args + extra, capsys)
        assert code == 0, err
        logs.append(out + err)
        losses.append([r["loss"] for r in read_metrics(tmp_path / "run") if "loss" in r])
    assert "Computing reference log probs" in logs[0]
    assert "Computing reference log probs" not in logs[1]  # read back from the align cache
    assert losses[0] == pytest.approx(losses[2], abs=1e-6) == losses[1]
    assert any((tmp_path / "cache" / "datasets").iterdir())


def test_use_liger_kernel_reaches_every_trl_config(tmp_path, tiny_lm, pairs_file):
    """--use-liger-kernel is TRL's use_liger_kernel (its kernels need CUDA: the machine check
    stops a run without one; see tests/test_plan.py)."""
    from trl import DPOConfig, SFTConfig

    from align.algos.common import trl_config
    from tests.algos.conftest import make_config

    cfg, _ = make_config("dpo", tiny_lm, pairs_file, tmp_path)
    assert trl_config(cfg, DPOConfig).use_liger_kernel is False
    cfg.train.use_liger_kernel = True
    assert trl_config(cfg, DPOConfig).use_liger_kernel is True
    assert trl_config(cfg, SFTConfig).use_liger_kernel is True
