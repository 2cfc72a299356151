"""Tiny random models built on the spot: no download, a few hundred thousand parameters.

Used by the tests, the quickstart and the CPU smoke runs of the benchmarks. The tokenizer is a
byte-level BPE trained on a small corpus, with ChatML special tokens and a chat template that
marks assistant turns with ``{% generation %}`` (so assistant-only losses work) and renders
assistant tool calls, as the chat templates of tool-using models do. Models are
saved with ``save_pretrained`` and loaded back through the same ``from_pretrained`` path users
take.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{%- if message['content'] %}{{- message['content'] }}{%- endif %}"
    "{%- for call in message['tool_calls'] or [] %}"
    "{%- set args = call['function']['arguments'] or '' %}"
    "{{- '<tool_call>' + call['function']['name'] + ' ' }}"
    "{{- args if args is string else args | tojson }}{{- '</tool_call>' }}"
    "{%- endfor %}{{- '<|im_end|>' }}{% endgeneration %}{{- '\\n' }}"
    "{%- else %}{{- message['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
DEFAULT_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? The capital of France is Paris.",
    "Write a short poem about the sea. The sea is wide and blue.",
    "Count from one to ten: one two three four five six seven eight nine ten.",
    "Answer yes or no. Yes. No. Maybe. I think so. I do not know.",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 + - * / = ( )",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "A B C D E F G H I J K L M N O P Q R S T U V W X Y Z . , ! ? ; : ' \"",
    "Please explain why the sky is blue. Light scatters in the air.",
    "good bad great terrible helpful harmful correct wrong right answer question",
]


def build_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 512, *,
                    span_words: bool = False) -> Any:
    """Train a byte-level BPE tokenizer and wrap it as a chat-ready PreTrainedTokenizerFast.

    ``span_words``: merges may cross word and punctuation boundaries, but not a line end (so
    not the end of a chat template's turn header) or a digit (digits stay single tokens): text
    the corpus repeats verbatim, such as a tool schema in every system turn, becomes a few long
    tokens instead of one or more per word."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(corpus) if corpus is not None else DEFAULT_CORPUS
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split("\n", behavior="isolated"),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]) if span_words \
        else pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", bos_token=None,
                                   unk_token=None, model_max_length=2048)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config(tokenizer: Any, arch: str = "qwen2", hidden_size: int = 64, layers: int = 2,
                heads: int = 4, kv_heads: int = 2, intermediate_size: int = 256,
                max_positions: int = 1024) -> Any:
    """A Qwen2- or Llama-shaped config sized for CPU tests."""
    from transformers import LlamaConfig, Qwen2Config

    cls = {"qwen2": Qwen2Config, "llama": LlamaConfig}[arch]
    return cls(vocab_size=len(tokenizer), hidden_size=hidden_size,
               intermediate_size=intermediate_size, num_hidden_layers=layers,
               num_attention_heads=heads, num_key_value_heads=kv_heads,
               max_position_embeddings=max_positions, tie_word_embeddings=True,
               eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
               bos_token_id=None)


def build_tiny_lm(out_dir: str | Path, tokenizer: Any | None = None, *, arch: str = "qwen2",
                  seed: int = 0, **config_kwargs: Any) -> Path:
    """Save a random causal LM + tokenizer to ``out_dir``; return the directory."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    tokenizer = tokenizer or build_tokenizer()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(tokenizer, arch, **config_kwargs))
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
