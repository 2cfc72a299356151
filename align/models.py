"""Load policies, references, reward models and tokenizers: full, LoRA or QLoRA; safetensors only.

Every model goes through ``from_pretrained`` on a local directory or a hub id, or through the
GGUF path for ``*.gguf`` files: dequantized once into a plain HF directory in the align cache
(``$ALIGN_CACHE/gguf/``, default ``~/.cache/align``), which every role then loads like any
model, so trainers that reload the policy by its path (TRL's reference copy) find it too.
Remote code runs only with ``--trust-remote-code``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from align.config import LoraArgs, ModelArgs, TrainArgs
from align.errors import AlignError

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def resolve_dtype(model: ModelArgs, train: TrainArgs) -> Any:
    """``--dtype auto`` follows the precision flags: bf16 -> bfloat16, fp16 -> float16, else fp32."""
    import torch

    name = model.dtype
    if name == "auto":
        name = "bfloat16" if train.bf16 else "float16" if train.fp16 else "float32"
    return getattr(torch, DTYPES[name])


def _gguf_parts(path: str) -> tuple[str, str] | None:
    if path.endswith(".gguf"):
        p = Path(path).expanduser()
        return str(p.parent), p.name
    return None


def _friendly_load_error(path: str, e: Exception) -> AlignError:
    text = str(e)
    if "safetensors" in text.lower():
        return AlignError(f"{path}: no .safetensors weights found. align loads safetensors only "
                          "(pickled .bin files can run code); convert the checkpoint with "
                          "`model.save_pretrained(dir, safe_serialization=True)`")
    if isinstance(e, OSError):
        return AlignError(f"{path}: cannot load ({text.splitlines()[0] if text else e!r}). Is it "
                          "a model directory (config.json + weights) or a reachable hub id?")
    return AlignError(f"{path}: cannot load ({type(e).__name__}: {text.splitlines()[0]})")


def _looks_local(path: str) -> bool:
    return path.startswith((".", "/", "~")) or path.endswith(".gguf") or path.count("/") != 1


GGUF_MAGIC = b"GGUF"  # the first bytes of every GGUF file


def check_model_path(flag: str, path: str | None) -> None:
    """A path that is clearly local must exist; ``org/name`` may be a hub id. A ``.gguf`` file
    must be one (checked here, before any model loads)."""
    if path and _looks_local(path) and not Path(path).expanduser().exists():
        raise AlignError(f"{flag} {path}: no such file or directory")
    if path and _gguf_parts(path) is not None:
        check_gguf(Path(path).expanduser(), f"{flag} {path}")


def check_gguf(file: Path, name: str) -> None:
    """Refuse a file named .gguf that does not start with the GGUF magic bytes."""
    try:
        with file.open("rb") as fh:
            head = fh.read(len(GGUF_MAGIC))
    except OSError:
        return  # a missing file is reported where it is opened
    if head != GGUF_MAGIC:
        raise AlignError(f"{name}: not a GGUF file (it does not start with the GGUF magic "
                         "bytes); give a .gguf model file, or a model directory or hub id")


# Files that hold a tokenizer's vocabulary (fast, SentencePiece, BPE, WordPiece layouts).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt",
                   "spiece.model", "sentencepiece.bpe.model")


def load_tokenizer(path: str, model: ModelArgs) -> Any:
    """Load the tokenizer; give it a pad token (the EOS) when it has none. A model directory
    without tokenizer files is refused (transformers would build an empty tokenizer from the
    config, and training would run on empty sequences)."""
    from transformers import AutoTokenizer

    local = Path(gguf_directory(path)).expanduser()
    if local.is_dir() and not any((local / f).is_file() for f in TOKENIZER_FILES):
        raise AlignError(f"{path}: no tokenizer files ({', '.join(TOKENIZER_FILES[:4])}, ...); "
                         "copy the tokenizer of the model it was trained from into it "
                         "(tokenizer.save_pretrained(DIR))")
    kwargs: dict[str, Any] = {"trust_remote_code": model.trust_remote_code}
    try:
        tok = AutoTokenizer.from_pretrained(gguf_directory(path), **kwargs)
    except (OSError, ValueError) as e:
        raise _friendly_load_error(path, e) from e
    if len(tok) <= 1 or not tok("hello world", add_special_tokens=False)["input_ids"]:
        raise AlignError(f"{path}: its tokenizer is empty ({len(tok)} token(s)); it cannot "
                         "encode text. Save the model's real tokenizer into it")
    from align.templates import apply

    apply(tok, model.chat_template)  # --chat-template, before the pad token falls back to EOS
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def check_chat_template(tokenizer: Any, data: Any, model_path: str) -> None:
    """Conversational data needs a chat template to render the messages."""
    if data is not None and data.form == "conversational" and not tokenizer.chat_template:
        raise AlignError(f"{data.file} holds chat messages, but the tokenizer of {model_path} "
                         "has no chat template to render them; use a chat model, or write the "
                         "data as plain strings")


def _saved_keys(directory: Path) -> set[str] | None:
    """Tensor names in a directory's safetensors files (headers only), or None if it has none."""
    from safetensors import safe_open

    index = directory / "model.safetensors.index.json"
    if index.is_file():
        import json

        return set(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        return None
    keys: set[str] = set()
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            keys.update(fh.keys())
    return keys


def check_score_head(path: str, model: ModelArgs) -> None:
    """Refuse a reward model whose saved weights lack its score head: transformers would
    initialise the head at random and every reward would be noise. Local directories only
    (a LoRA adapter or a ms-swift value_head.safetensors passes)."""
    directory = Path(path).expanduser()
    if not directory.is_dir() or (directory / "adapter_config.json").is_file() or \
            (directory / "value_head.safetensors").is_file():
        return
    saved = _saved_keys(directory)
    if saved is None:
        return  # no safetensors: loading will say so
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForSequenceClassification

    try:
        config = AutoConfig.from_pretrained(str(directory), num_labels=1,
                                            trust_remote_code=model.trust_remote_code)
        with init_empty_weights():
            clf = AutoModelForSequenceClassification.from_config(
                config, trust_remote_code=model.trust_remote_code)
    except (OSError, ValueError) as e:
        raise _friendly_load_error(path, e) from e
    prefix = clf.base_model_prefix + "."
    head = [k for k in clf.state_dict() if not k.startswith(prefix)]
    missing = [k for k in head if k not in saved]
    if missing:
        kind = (config.architectures or ["a model"])[0]
        raise AlignError(f"--reward-model {path}: its weights have no score head ({kind}; "
                         f"missing {', '.join(missing)}), so it would be initialised at random "
                         "and its rewards would be noise. Train a reward model first (`align "
                         "rlhf --algo rm`), or pass --allow-new-score-head to use it anyway")


def quantization_config(lora: LoraArgs) -> Any:
    """4-bit NF4 with double quantisation and bf16 compute (the QLoRA paper's recipe)."""
    if not lora.qlora:
        return None
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def model_kwargs(model: ModelArgs, lora: LoraArgs, train: TrainArgs,
                 quantize: bool = True) -> dict[str, Any]:
    """Keyword arguments for ``from_pretrained`` shared by every role."""
    kwargs: dict[str, Any] = {
        "dtype": resolve_dtype(model, train),
        "trust_remote_code": model.trust_remote_code,
        "use_safetensors": True,
    }
    if model.attn_implementation:
        kwargs["attn_implementation"] = model.attn_implementation
    if quantize and lora.qlora:
        import torch

        kwargs["quantization_config"] = quantization_config(lora)
        kwargs["dtype"] = torch.bfloat16
        kwargs["device_map"] = {"": _local_cuda_device()}
    return kwargs


def _local_cuda_device() -> int:
    import os

    return int(os.environ.get("LOCAL_RANK", 0))


def _from_pretrained(auto_cls: Any, path: str, kwargs: dict[str, Any]) -> Any:
    try:
        return auto_cls.from_pretrained(gguf_directory(path), **kwargs)
    except AlignError:
        raise
    except (OSError, ValueError) as e:
        raise _friendly_load_error(path, e) from e


def gguf_directory(path: str) -> str:
    """``path`` itself, or for a ``.gguf`` file the plain HF directory it converts to (made once,
    under ``$ALIGN_CACHE/gguf/``, keyed by the file's path, size and modification time)."""
    parts = _gguf_parts(path)
    if parts is None:
        return path
    import hashlib

    from align.cache import cache_dir

    file = Path(parts[0]) / parts[1]
    if not file.is_file():
        raise AlignError(f"{path}: no such GGUF file")
    check_gguf(file, path)
    stat = file.stat()
    key = hashlib.sha256(f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    out = cache_dir() / "gguf" / f"{file.stem}-{key.hexdigest()[:12]}"
    if not (out / "config.json").exists():
        convert_gguf(file, out)
    return str(out)


def convert_gguf(file: Path, out: Path) -> None:
    """Dequantize a GGUF file to fp32 and save model + tokenizer as a plain HF directory
    (written beside ``out`` and renamed into place, so a killed run leaves no half directory)."""
    try:
        import gguf  # noqa: F401
    except ImportError as e:
        raise AlignError("loading .gguf files needs the gguf package: pip install 'align[gguf]'"
                         ) from e
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, filename = str(file.parent), file.name
    print(f"converting {file} to a plain model in {out}")
    try:
        loaded = AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename,
                                                      dtype=torch.float32)
    except (ValueError, KeyError, NotImplementedError) as e:  # what transformers raises for
        # a GGUF file it cannot read (an architecture or a quantization it does not know)
        first = (str(e).strip().splitlines() or [""])[0]
        raise AlignError(f"{file}: transformers cannot read this GGUF file "
                         f"({type(e).__name__}: {first}); convert the model to a Hugging Face "
                         "directory and pass that") from e
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    # transformers refuses save_pretrained on a GGUF-loaded model: rebuild it from its config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    if getattr(config, "tie_word_embeddings", False):
        fresh.tie_weights()
    tmp = out.with_name(out.name + ".tmp")
    fresh.save_pretrained(str(tmp))
    AutoTokenizer.from_pretrained(directory, gguf_file=filename).save_pretrained(str(tmp))
    tmp.replace(out)


def load_causal_lm(path: str, model: ModelArgs, lora: LoraArgs, train: TrainArgs,
                   quantize: bool = True) -> Any:
    """Load a causal LM for training or as a frozen reference."""
    from transformers import AutoModelForCausalLM

    return _from_pretrained(AutoModelForCausalLM, path, model_kwargs(model, lora, train, quantize))


def load_sequence_classifier(path: str, model: ModelArgs, lora: LoraArgs, train: TrainArgs,
                             quantize: bool = False) -> Any:
    """Load a one-output sequence classifier (a reward model, or a causal LM to train as one)."""
    from transformers import AutoModelForSequenceClassification

    kwargs = model_kwargs(model, lora, train, quantize)
    kwargs["num_labels"] = 1
    if is_sequence_classifier(path):
        clf = _from_pretrained(AutoModelForSequenceClassification, path, kwargs)
    else:
        # a causal LM becoming a reward model: transformers' table of the missing head
        # becomes one line
        from align.console import quiet_logger

        with quiet_logger("transformers.modeling_utils"):
            clf = _from_pretrained(AutoModelForSequenceClassification, path, kwargs)
        print(f"{path}: a new score head (one output) is initialised at random on top of it")
    if clf.config.pad_token_id is None:
        tok = load_tokenizer(path, model)
        clf.config.pad_token_id = tok.pad_token_id
    return clf


def is_sequence_classifier(path: str) -> bool:
    """Whether the checkpoint at ``path`` already is a sequence classifier (has a score head),
    from its config.json; False when that cannot be read."""
    import json

    config = Path(gguf_directory(path)).expanduser() / "config.json"
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError):
        return False
    return any(a.endswith("ForSequenceClassification") for a in architectures)


def lora_config(lora: LoraArgs, task_type: str = "CAUSAL_LM") -> Any:
    """A peft LoraConfig from our flags (``task_type`` SEQ_CLS keeps the score head trainable)."""
    if not lora.enabled:
        return None
    from peft import LoraConfig

    targets: Any = lora.lora_target_modules
    if targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    return LoraConfig(r=lora.lora_r, lora_alpha=lora.lora_alpha, lora_dropout=lora.lora_dropout,
                      target_modules=targets, task_type=task_type, bias="none")
