"""Merge a LoRA adapter into its base model and save a plain model (`align merge-lora`).

Works for causal-LM adapters (dpo, kto, cpo, orpo, simpo, sft) and sequence-classification
adapters (rm: the trained score head travels in the adapter as a saved module). The base model
is read from the adapter's ``adapter_config.json`` unless ``base`` is given, and is loaded
unquantised, so a QLoRA adapter merges into full-precision weights (merging into 4-bit weights
would round the update away).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from align.errors import AlignError

ADAPTER_CONFIG = "adapter_config.json"


def read_adapter_config(adapter_dir: str | Path) -> dict[str, Any]:
    """The adapter's peft config as a dict; a clear error when the directory holds none."""
    path = Path(adapter_dir) / ADAPTER_CONFIG
    if not path.is_file():
        raise AlignError(f"{adapter_dir}: no {ADAPTER_CONFIG}; is it the output of a --lora or "
                         "--qlora run?")
    return json.loads(path.read_text(encoding="utf-8"))


def _has_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))


def merge_adapter(adapter_dir: str | Path, output_dir: str | Path, base: str | None = None,
                  dtype: str = "auto", trust_remote_code: bool = False) -> Path:
    """Load base + adapter, fold the adapter into the weights, save safetensors + tokenizer.

    Returns the output directory. ``dtype`` "auto" keeps the base checkpoint's dtype.
    """
    import torch
    from peft import PeftModel
    from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification,
                              AutoTokenizer)

    adapter_dir, out = Path(adapter_dir), Path(output_dir)
    config = read_adapter_config(adapter_dir)
    if out.resolve() == adapter_dir.resolve():
        raise AlignError("--output-dir must differ from the adapter directory (a model and an "
                         "adapter in one directory load ambiguously)")
    base_path = base or config.get("base_model_name_or_path")
    if not base_path:
        raise AlignError(f"{adapter_dir}/{ADAPTER_CONFIG} names no base model; pass --base")
    if base_path.startswith((".", "/", "~")) and not Path(base_path).expanduser().exists():
        raise AlignError(f"base model {base_path} (from {ADAPTER_CONFIG}) does not exist; "
                         "pass --base")
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "use_safetensors": True,
                              "dtype": dtype if dtype == "auto" else getattr(torch, dtype)}
    if config.get("task_type") == "SEQ_CLS":
        # align's reward models have one output; the trained head comes from the adapter.
        model = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=1,
                                                                   **kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(base_path, **kwargs)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(
        str(adapter_dir) if _has_tokenizer(adapter_dir) else base_path,
        trust_remote_code=trust_remote_code)
    if merged.config.pad_token_id is None:
        # Sequence classifiers find the last real token through pad_token_id.
        merged.config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
            else tokenizer.eos_token_id
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
