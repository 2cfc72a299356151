"""The tiny fixtures load back through the same from_pretrained path users take."""

from align.config import LoraArgs, ModelArgs, TrainArgs
from align.models import load_causal_lm, load_sequence_classifier, load_tokenizer


def test_tiny_lm_loads_through_from_pretrained(tiny_lm):
    model = load_causal_lm(str(tiny_lm), ModelArgs(), LoraArgs(), TrainArgs())
    tok = load_tokenizer(str(tiny_lm), ModelArgs())
    total = sum(p.numel() for p in model.parameters())
    assert 50_000 < total < 1_000_000  # "a few hundred thousand parameters"
    assert tok.pad_token_id != tok.eos_token_id
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")


def test_tiny_rm_has_one_output(tiny_rm):
    import torch

    rm = load_sequence_classifier(str(tiny_rm), ModelArgs(), LoraArgs(), TrainArgs())
    tok = load_tokenizer(str(tiny_rm), ModelArgs())
    batch = tok(["a b c", "d"], return_tensors="pt", padding=True)
    with torch.no_grad():
        scores = rm(**batch).logits
    assert scores.shape == (2, 1)


def test_llama_shape_builds(tiny_llama):
    model = load_causal_lm(str(tiny_llama), ModelArgs(), LoraArgs(), TrainArgs())
    assert model.config.model_type == "llama"
