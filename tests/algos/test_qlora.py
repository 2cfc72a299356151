"""QLoRA: the code path is checked on CPU (k-bit preparation, bf16 compute); real 4-bit
training needs a CUDA GPU and bitsandbytes, and runs only there (marked gpu)."""

from __future__ import annotations

import pytest

from tests.algos.conftest import FAST, make_config
from tests.conftest import run_cli


def test_qlora_prepares_the_model_and_trains_in_bf16(tmp_path, tiny_lm, pairs_file,
                                                     monkeypatch):
    import peft
    from trl import DPOConfig

    from align.algos import common

    cfg, _ = make_config("dpo", tiny_lm, pairs_file, tmp_path)
    cfg.lora.qlora = True
    seen = []
    monkeypatch.setattr(peft, "prepare_model_for_kbit_training",
                        lambda model, **kw: seen.append(kw) or model)
    marker = object()
    assert common.prepare_quantized(marker, cfg) is marker
    assert seen == [{"use_gradient_checkpointing": False}]
    assert common.trl_config(cfg, DPOConfig).bf16 is True  # QLoRA computes in bf16
    cfg.lora.qlora = False
    assert common.prepare_quantized(marker, cfg) is marker and len(seen) == 1


def test_qlora_quantization_config_is_nf4_double_quant_bf16():
    import torch

    from align.config import LoraArgs
    from align.models import quantization_config

    q = quantization_config(LoraArgs(qlora=True))
    assert q.load_in_4bit and q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_use_double_quant
    assert q.bnb_4bit_compute_dtype == torch.bfloat16


@pytest.mark.gpu
@pytest.mark.parametrize("algo", ["dpo", "rm"])
def test_qlora_trains_and_merges_on_gpu(tmp_path, capsys, tiny_lm, pairs_file, algo):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("bitsandbytes")
    out = tmp_path / algo
    code, _, err = run_cli(["rlhf", "--algo", algo, "--model", tiny_lm, "--dataset", pairs_file,
                            "--qlora", "--output-dir", out, "--max-steps", "4", *FAST], capsys)
    assert code == 0, err
    adapter = out / "adapter" if algo == "rm" else out
    assert (adapter / "adapter_config.json").exists()
    if algo == "dpo":
        code, _, err = run_cli(["merge-lora", out, "--output-dir", tmp_path / "merged"], capsys)
        assert code == 0, err
