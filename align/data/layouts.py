"""Recognise public dataset layouts that need a conversion, and help map column names.

- :func:`conversion_for` names the ``align data convert`` command for a record in a layout
  align converts rather than reads (ShareGPT, two answers plus a label, rated or ranked
  completion lists, pairs given to KTO);
- :func:`propose_columns` turns a file's column names into a ``--columns`` proposal for the
  fields a format misses;
- :func:`mapping_warnings` warns when a pairwise ``--columns`` mapping leaves a column that
  looks like a preference label unused (Stanford SHP's ``labels``: mapping
  ``chosen=human_ref_A`` silently flips every pair where B won).
"""

from __future__ import annotations

import re
from typing import Any

from align.data.formats import SFT_ALTERNATIVES

SYNONYMS: dict[str, tuple[str, ...]] = {
    "prompt": ("question", "instruction", "query", "input", "problem", "history", "context",
               "prompt_text", "request", "post", "user_input"),
    "chosen": ("chosen_response", "response_chosen", "chosen_text", "preferred", "better",
               "good", "accepted", "winner", "positive", "pos", "response_j"),
    "rejected": ("rejected_response", "response_rejected", "rejected_text", "dispreferred",
                 "worse", "bad", "loser", "negative", "neg", "response_k"),
    "completion": ("response", "answer", "output", "reply", "target", "generation"),
    "label": ("desirable", "is_desirable", "is_good", "thumbs_up", "kto_label", "good"),
    "messages": ("conversation", "dialog", "dialogue", "chat", "turns"),
    "text": ("content", "document", "body"),
    "solution": ("answer", "ground_truth", "reference", "final_answer", "gold", "target"),
}
REQUIRED = {"prompt": ("prompt",), "pairwise": ("prompt", "chosen", "rejected"),
            "unpaired": ("prompt", "completion", "label")}
LABEL_LIKE = re.compile(r"^(labels?|preferred|preference|prefer|winner|choice|better|"
                        r"better_response_id|safer_response_id|chosen_id|.*_preferred|"
                        r"is_a_better|a_is_better)$", re.I)


def _sharegpt(value: Any) -> bool:
    return (isinstance(value, list) and bool(value) and isinstance(value[0], dict)
            and "from" in value[0] and "value" in value[0])


def conversion_for(data: dict[str, Any], fmt: str, source: str) -> str | None:
    """If ``data`` is in a layout that ``align data convert`` turns into ``fmt``, the message
    that says so and gives the command; else None."""
    keys = set(data)
    cmd = f"align data convert {source} --to {{to}} -o {{out}}"
    if _sharegpt(data.get("conversations")) or _sharegpt(data.get("messages")):
        column = "conversations" if _sharegpt(data.get("conversations")) else "messages"
        to = "pairwise" if isinstance(data.get("chosen"), dict) else "sft"
        return (f"ShareGPT layout ('{column}' of {{\"from\", \"value\"}} turns): convert it "
                f"first: {cmd.format(to=to, out='chat.jsonl' if to == 'sft' else 'pairs.jsonl')}")
    if {"human_ref_A", "human_ref_B"} <= keys or {"response_0", "response_1"} <= keys:
        a, b = ("human_ref_A", "human_ref_B") if "human_ref_A" in keys else \
            ("response_0", "response_1")
        return (f"two answers ('{a}', '{b}') and a preference label: convert them to "
                f"chosen/rejected pairs first: {cmd.format(to='pairwise', out='pairs.jsonl')}")
    completions = data.get("completions")
    if isinstance(completions, list) and completions and "chosen" not in keys and \
            "completion" not in keys:
        rated = isinstance(completions[0], dict)
        what = "rated completions (a list of answers with scores)" if rated else \
            "ranked completions (a list of answers, best first, or with 'scores')"
        return f"{what}: convert them to pairs first: " + \
            cmd.format(to="pairwise", out="pairs.jsonl")
    if fmt == "unpaired" and {"chosen", "rejected"} <= keys and "completion" not in keys:
        return ("preference pairs (chosen/rejected), but KTO reads single completions with a "
                f"label: split each pair first: {cmd.format(to='unpaired', out='kto.jsonl')}")
    return None


def _guess(field: str, columns: list[str], taken: set[str]) -> str | None:
    lower = {c.lower(): c for c in columns if c not in taken}
    for synonym in SYNONYMS.get(field, ()):
        if synonym in lower:
            return lower[synonym]
    for low, col in lower.items():  # chosen_text, prompt_en, ...
        if field in low:
            return col
    return None


def propose_columns(columns: list[str], fmt: str) -> str | None:
    """A ``--columns`` proposal for the fields ``fmt`` needs and ``columns`` lack, or None."""
    present = set(columns)
    if fmt == "sft":
        if any(set(alt) <= present for alt in SFT_ALTERNATIVES):
            return None
        wanted: tuple[str, ...] = ("messages",) if _guess("messages", columns, set()) else \
            ("prompt", "completion")
    else:
        wanted = REQUIRED[fmt]
    taken = set(present & set(wanted))
    pairs = []
    for field in wanted:
        if field in present:
            continue
        col = _guess(field, columns, taken)
        if col is None:
            return None
        taken.add(col)
        pairs.append(f"{field}={col}")
    if fmt == "prompt" and "solution" not in present:
        col = _guess("solution", columns, taken)
        if col is not None:
            pairs.append(f"solution={col}")
    return ",".join(pairs) or None


def mapping_warnings(fmt: str, mapping: dict[str, str], columns: list[str]) -> list[str]:
    """Warnings about a ``--columns`` mapping (theirs -> ours) that likely loses meaning."""
    if fmt != "pairwise" or not {"chosen", "rejected"} & set(mapping.values()):
        return []
    unused = [c for c in columns if c not in mapping and LABEL_LIKE.match(c)]
    return [f"warning: --columns maps chosen/rejected but leaves the column '{c}' unused; if it "
            "says which answer is preferred, every pair where the other answer won is now "
            "flipped. Convert instead: align data convert FILE --to pairwise -o pairs.jsonl "
            "(it reads the label)" for c in unused]
