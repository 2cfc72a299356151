"""Cut long prompts from the left before training (``--max-prompt-length``).

TRL 1.16's trainers have no prompt-length knob (DPO, KTO, CPO, ORPO and SFT only cut the whole
sequence at ``max_length``, from the right), so a long prompt can crowd the answer out of the
window. align keeps the *end* of each prompt, the part next to the answer, before handing rows
to the trainer:

- plain-text prompts keep their last ``max_prompt_length`` tokens;
- chat prompts drop whole messages from the start (keeping any leading system messages) and
  restart at the earliest user message from which the rendered prompt fits. A prompt whose
  last user turn alone is too long is left as it is; ``max_length`` still bounds it.

The tokenizer is passed in, so this module imports nothing heavy.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def _prompt_tokens(tokenizer: Any, prompt: Any) -> int:
    if isinstance(prompt, str):
        return len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _shorten_messages(tokenizer: Any, messages: list[dict], limit: int) -> list[dict]:
    head = 0
    while head < len(messages) and messages[head].get("role") == "system":
        head += 1
    system, rest = messages[:head], messages[head:]
    starts = [i for i, m in enumerate(rest) if m.get("role") == "user"] or [0]
    for i in starts:  # earliest start first: keep as much context as fits
        candidate = system + rest[i:]
        if _prompt_tokens(tokenizer, candidate) <= limit:
            return candidate
    return system + rest[starts[-1]:]


def truncate_prompts(rows: list[dict[str, Any]], tokenizer: Any,
                     max_prompt_length: int | None) -> tuple[list[dict[str, Any]], int]:
    """Return ``(rows, n_cut)``: rows whose ``prompt`` fits in ``max_prompt_length`` tokens.

    Rows without a prompt (SFT ``messages``/``text``) pass through. Rows are copied, never
    modified in place. Plain-text prompts are tokenized in one batch (fast on large sets).
    """
    if not max_prompt_length:
        return list(rows), 0
    out = list(rows)
    text_at = [i for i, r in enumerate(rows) if isinstance(r.get("prompt"), str)]
    encoded = tokenizer([rows[i]["prompt"] for i in text_at],
                        add_special_tokens=False)["input_ids"] if text_at else []
    n_cut = 0
    for i, ids in zip(text_at, encoded):
        if len(ids) > max_prompt_length:
            out[i] = {**rows[i], "prompt": tokenizer.decode(ids[-max_prompt_length:])}
            n_cut += 1
    lengths: dict[str, int] = {}  # chat prompts repeat (several answers per prompt): render once

    def chat_tokens(prompt: list[dict]) -> int:
        key = json.dumps(prompt, sort_keys=True, default=str)
        if key not in lengths:
            lengths[key] = _prompt_tokens(tokenizer, prompt)
        return lengths[key]

    for i, row in enumerate(rows):
        prompt = row.get("prompt")
        if isinstance(prompt, list) and chat_tokens(prompt) > max_prompt_length:
            out[i] = {**row, "prompt": _shorten_messages(tokenizer, prompt, max_prompt_length)}
            n_cut += 1
    return out, n_cut


def truncate_dataset(dataset: Any, tokenizer: Any, max_prompt_length: int | None,
                     batch_size: int = 1000) -> tuple[Any, int]:
    """:func:`truncate_prompts` over a ``datasets.Dataset``, batch by batch: ``(dataset,
    n_cut)``. The dataset comes back as it was when no prompt is too long; otherwise a mapped
    copy (on disk, beside it) with the same features, so chat messages keep their type."""
    if not max_prompt_length or "prompt" not in dataset.column_names:
        return dataset, 0
    prompts = dataset.select_columns(["prompt"])
    n_cut = 0
    for start in range(0, dataset.num_rows, batch_size):
        batch = prompts[start:start + batch_size]["prompt"]
        n_cut += truncate_prompts([{"prompt": p} for p in batch], tokenizer,
                                  max_prompt_length)[1]
    if not n_cut:
        return dataset, 0

    def cut(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        rows, _ = truncate_prompts([{"prompt": p} for p in batch["prompt"]], tokenizer,
                                   max_prompt_length)
        return {"prompt": [r["prompt"] for r in rows]}

    # named from its inputs: hashing the function would pickle the tokenizer
    key = f"{dataset._fingerprint}:{max_prompt_length}:{tokenizer.name_or_path}"
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:32]
    return dataset.map(cut, batched=True, batch_size=batch_size, features=dataset.features,
                       new_fingerprint=fingerprint, desc="Cutting long prompts"), n_cut
