"""Reward-model training end to end: accuracy rises above chance, and the output directory
loads as a plain sequence classifier (full and LoRA), with value_head.safetensors."""

from __future__ import annotations

import json

import pytest

from tests.algos.conftest import FAST, assert_loss_falls, polarity_pairs
from tests.conftest import run_cli


def accuracy(model_dir, rows):
    """Share of pairs the saved model scores chosen > rejected, scored from raw text."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert model.config.num_labels == 1 and model.config.pad_token_id is not None

    def score(text):
        with torch.no_grad():
            return model(**tok(text + tok.eos_token, return_tensors="pt")).logits[0, 0].item()

    wins = [score(r["prompt"] + r["chosen"]) > score(r["prompt"] + r["rejected"]) for r in rows]
    return sum(wins) / len(wins)


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_rm_learns_pairs_and_loads_as_sequence_classifier(tmp_path, capsys, tiny_lm,
                                                          polarity_file, mode):
    from safetensors.torch import load_file

    out = tmp_path / f"rm-{mode}"
    extra = ["--lora", "--learning-rate", "1e-2"] if mode == "lora" else \
        ["--learning-rate", "3e-3"]
    code, stdout, err = run_cli(["rlhf", "--algo", "rm", "--model", tiny_lm, "--dataset",
                                 polarity_file, "--output-dir", out, "--max-steps", "24",
                                 *extra, *FAST], capsys)
    assert code == 0, err
    assert "holding out 6 of 64 pairs" in stdout
    assert "pairwise accuracy on 6 held-out pairs" in stdout
    assert_loss_falls(out, min_drop=0.2)
    final = json.loads((out / "final_metrics.json").read_text())
    assert "eval_pairwise_accuracy" in final

    rows = polarity_pairs()
    # Half the pairs prefer " good", half " bad": a scorer that ignores the prompt gets 50%.
    assert accuracy(out, rows) >= 0.75
    head = load_file(str(out / "value_head.safetensors"))
    weights = load_file(str(out / "model.safetensors"))
    assert head["v_head.summary.weight"].shape == (1, 64)
    assert head["v_head.summary.weight"].equal(weights["score.weight"])
    assert head["v_head.summary.bias"].shape == (1,)
    if mode == "lora":
        assert (out / "adapter" / "adapter_config.json").exists()
        assert not (out / "adapter_config.json").exists()  # root loads without peft
