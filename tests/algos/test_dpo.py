"""DPO end to end through the CLI on a tiny model: the loss falls and the output loads back."""

from __future__ import annotations

from typing import Any

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
            "3", "--save-steps", "100", "--report-to", "none"]
    logs, losses = [], []
    # the second run writes elsewhere, as a rerun usually does: the cache is keyed on what
    # the log-probs depend on (data, model, lengths), not on the output directory
    for run, extra in (("a", ["--precompute-ref-logps"]), ("b", ["--precompute-ref-logps"]),
                       ("c", [])):
        code, out, err = run_cli(args + ["--output-dir", tmp_path / run] + extra, capsys)
        assert code == 0, err
        logs.append(out + err)
        losses.append([r["loss"] for r in read_metrics(tmp_path / run) if "loss" in r])
    assert "Computing reference log probs" in logs[0]
    assert "Computing reference log probs" not in logs[1]  # read back from the align cache
    assert losses[0] == pytest.approx(losses[2], abs=1e-6) == losses[1]
    code, out, err = run_cli(args + ["--output-dir", tmp_path / "d", "--max-length", "40",
                                     "--precompute-ref-logps"], capsys)
    assert code == 0, err
    assert "Computing reference log probs" in out + err  # other lengths: other log-probs
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


def test_reference_cache_key_follows_content_and_settings_not_the_output_dir(tmp_path):
    """align.algos.common.ref_cache_key: the same tokenized rows under another --output-dir
    share a key; other rows, another order, a slice of the same rows, or a setting that can
    change a log-prob (max_length) do not."""
    from datasets import Dataset
    from trl import DPOConfig

    from align.algos.common import ref_cache_key

    ds = Dataset.from_dict({"prompt_ids": [[1, 2], [3], [4, 5, 6]],
                            "chosen_ids": [[7], [8, 9], [10]], "rejected_ids": [[11], [12], [13]]})
    def config(out: str, **fields: Any) -> Any:
        return DPOConfig(output_dir=str(tmp_path / out), report_to="none", use_cpu=True,
                         bf16=False, **fields)

    a = config("a")
    b = config("b", logging_steps=3, save_steps=7, learning_rate=1e-3)
    key = ref_cache_key(ds, a)
    assert key == ref_cache_key(ds, b) == ref_cache_key(Dataset.from_dict(ds.to_dict()), a)
    other = {"prompt_ids": [[1, 2], [3], [4, 5, 0]], "chosen_ids": ds["chosen_ids"],
             "rejected_ids": ds["rejected_ids"]}
    assert ref_cache_key(Dataset.from_dict(other), a) != key
    assert ref_cache_key(ds.select([2, 1, 0]), a) != key
    assert ref_cache_key(ds.select([0, 1]), a) != ref_cache_key(ds.select([1, 2]), a)
    assert ref_cache_key(ds, config("a", max_length=8)) != key
