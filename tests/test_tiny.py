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


def test_span_words_tokenizer_merges_repeated_text_not_digits_or_lines(tmp_path):
    """span_words: a text the corpus repeats becomes a few tokens; digits stay one token each;
    no token crosses a line end (a turn header's); a Llama-shaped model keeps it on loading."""
    from transformers import AutoTokenizer

    from align.tiny import build_tiny_lm, build_tokenizer

    header = "Tools: multiply(a, b) multiplies two integers and returns the product."
    corpus = [f"{header}\nWhat is {a} * {b}?\nThe answer is {a * b}." for a, b in
              [(12, 34), (56, 78), (91, 23), (45, 67)]] * 20
    words = build_tokenizer(corpus, vocab_size=400)
    spans = build_tokenizer(corpus, vocab_size=400, span_words=True)
    assert len(spans(header)["input_ids"]) <= 3 < len(words(header)["input_ids"])
    ids = spans("What is 12 * 34?\nThe answer is 408.")["input_ids"]
    pieces = [spans.decode([i]) for i in ids]
    assert [p for p in pieces if any(c.isdigit() for c in p)] == list("1234408")
    assert all(p == "\n" or "\n" not in p for p in pieces)
    loaded = AutoTokenizer.from_pretrained(str(build_tiny_lm(tmp_path / "m", spans, arch="llama")))
    assert loaded(header)["input_ids"] == spans(header)["input_ids"]
