"""`align merge-lora`: causal-LM and sequence-classification adapters fold into plain models."""

from __future__ import annotations

import json

import torch

from tests.conftest import run_cli

IDS = torch.tensor([[5, 6, 7, 8, 9]])


def _nudge_lora(model):
    """Fresh LoRA B matrices are zero (a no-op); give them values so merging shows."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)


def test_merge_lora_causal_lm(tmp_path, capsys, tiny_lm):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_lm),
                                LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    _nudge_lora(peft_model)
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    with torch.no_grad():
        expected = peft_model(IDS).logits

    out = tmp_path / "merged"
    code, stdout, err = run_cli(["merge-lora", adapter, "--output-dir", out], capsys)
    assert code == 0, err
    assert not (out / "adapter_config.json").exists() and (out / "model.safetensors").exists()
    assert (out / "tokenizer.json").exists()  # taken from the base when the adapter has none
    merged = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        assert torch.allclose(merged(IDS).logits, expected, atol=1e-4)


def test_merge_lora_reward_model_keeps_the_trained_head(tmp_path, capsys, tiny_lm):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    clf = AutoModelForSequenceClassification.from_pretrained(tiny_lm, num_labels=1)
    peft_model = get_peft_model(clf, LoraConfig(r=4, target_modules="all-linear",
                                                task_type="SEQ_CLS"))
    _nudge_lora(peft_model)
    with torch.no_grad():  # the score head is a saved module: train it too
        peft_model.base_model.model.score.modules_to_save["default"].weight.normal_()
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    with torch.no_grad():
        expected = peft_model(IDS).logits

    out = tmp_path / "merged"
    code, _, err = run_cli(["merge-lora", adapter, "--output-dir", out, "--base", tiny_lm], capsys)
    assert code == 0, err
    merged = AutoModelForSequenceClassification.from_pretrained(out)
    assert merged.config.num_labels == 1 and merged.config.pad_token_id is not None
    with torch.no_grad():
        assert torch.allclose(merged(IDS).logits, expected, atol=1e-4)


def test_merge_lora_errors_are_clear(tmp_path, capsys, tiny_lm):
    code, _, err = run_cli(["merge-lora", tiny_lm, "--output-dir", tmp_path / "o"], capsys)
    assert code == 2 and "no adapter_config.json" in err
    adapter = tmp_path / "a"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps(
        {"base_model_name_or_path": str(tmp_path / "gone"), "task_type": "CAUSAL_LM"}))
    code, _, err = run_cli(["merge-lora", adapter, "--output-dir", tmp_path / "o"], capsys)
    assert code == 2 and "does not exist; pass --base" in err
    code, _, err = run_cli(["merge-lora", adapter, "--output-dir", adapter], capsys)
    assert code == 2 and "must differ" in err
