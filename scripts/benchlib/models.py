"""Random-initialised models of real shapes, a word-level tokenizer, and synthetic data.

Timings and memory depend on a model's shape, not on its weights, so the benchmark builds
Qwen2.5-shaped models from config dicts (no download) with the real vocabulary size: the
logits of a 152k-entry vocabulary are a large share of the memory and the time. The tokenizer
is byte-level BPE without merges (the layout Qwen2's tokenizer class loads): a text of N
letters is exactly N tokens. Inputs therefore use only a few hundred of the ids, while the
models compute and sample over their whole vocabulary, which is what costs; TRL needs a
tokenizer, and align loads it from the model directory like any other.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any

# Qwen2.5 shapes, from the models' published config.json files.
SHAPES: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=1024,
                 tie_word_embeddings=True),
    # SmolLM2-135M's dimensions (a Llama; built as Qwen2 here, the same parameter count
    # but for the attention biases)
    "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                 num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                 tie_word_embeddings=True),
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                 tie_word_embeddings=True),
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                 num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                 tie_word_embeddings=True),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
               num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
               tie_word_embeddings=False),
}
PAD, EOS = 0, 2  # <|endoftext|>, <|im_end|> (1 is <|im_start|>)


def model_config(shape: str, num_labels: int | None = None) -> Any:
    """A Qwen2Config of ``shape`` (a sequence classifier's when ``num_labels`` is given)."""
    from transformers import Qwen2Config

    cfg = Qwen2Config(**SHAPES[shape], max_position_embeddings=32768, rms_norm_eps=1e-6,
                      rope_parameters={"rope_theta": 1e6, "rope_type": "default"},
                      eos_token_id=EOS, pad_token_id=PAD, bos_token_id=None)
    if num_labels is not None:
        cfg.num_labels = num_labels
    return cfg


def count_params(shape: str) -> int:
    """Parameters of the causal LM of ``shape`` (counted on the meta device: no memory)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config(shape))
    return sum(p.numel() for p in model.parameters())


def letter_tokenizer() -> Any:
    """Byte-level BPE with the 256 byte symbols and align's special tokens, and no merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from align.tiny import CHAT_TEMPLATE, SPECIAL_TOKENS

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):  # a set: fix the order
        vocab.setdefault(symbol, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=SPECIAL_TOKENS[EOS],
                                   pad_token=SPECIAL_TOKENS[PAD], model_max_length=32768)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(shape: str, directory: Path, *, classifier: bool = False, device: str = "cpu",
                seed: int = 0) -> Path:
    """Save a random causal LM (or one-output sequence classifier) of ``shape`` with the word
    tokenizer to ``directory``, in bfloat16 on CUDA machines (float32 on CPU); reuse it when
    it is already there. Weights are initialised on ``device``: seconds for 7B on a GPU."""
    import torch
    from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification,
                              GenerationConfig)

    if (directory / "config.json").exists():
        return directory
    torch.manual_seed(seed)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    cls = AutoModelForSequenceClassification if classifier else AutoModelForCausalLM
    with torch.device(device):
        model = cls.from_config(model_config(shape, 1 if classifier else None), dtype=dtype)
    if not classifier:
        model.generation_config = GenerationConfig(eos_token_id=EOS, pad_token_id=PAD)
    tmp = directory.with_name(directory.name + ".tmp")
    model.save_pretrained(tmp)
    letter_tokenizer().save_pretrained(tmp)
    tmp.replace(directory)  # a killed run leaves no half-written model behind
    del model
    return directory


def letters(rng: random.Random, n: int) -> str:
    """A text of exactly ``n`` tokens (one word: no spaces, which would be tokens too)."""
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(n))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def pairs_file(path: Path, n: int, prompt_len: int, completion_len: int, seed: int = 0
               ) -> Path:
    """``n`` preference pairs of ``prompt_len`` + ``completion_len`` tokens each side; the
    answers have one word less, for the EOS that TRL appends."""
    rng = random.Random(seed)
    return write_jsonl(path, [{"prompt": letters(rng, prompt_len),
                               "chosen": letters(rng, completion_len - 1),
                               "rejected": letters(rng, completion_len - 1)}
                              for _ in range(n)])


def prompts_file(path: Path, n: int, min_len: int, max_len: int, seed: int = 0) -> Path:
    """``n`` plain-text prompts with lengths drawn uniformly from [min_len, max_len]."""
    rng = random.Random(seed)
    return write_jsonl(path, [{"prompt": letters(rng, rng.randint(min_len, max_len))}
                              for _ in range(n)])
