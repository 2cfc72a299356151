"""Chat templates align ships, and ``--chat-template NAME|FILE.jinja``.

``chatml-tools``: ChatML turns (``<|im_start|>role ... <|im_end|>``) that render tool calls in
the Hermes format (``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``) and tool
results as ``<tool_response>`` blocks in a user turn, as Qwen2.5 does; assistant turns inside
``{% generation %}`` tags, so SFT can keep the loss on them. It lets a ChatML model whose own
template knows no tools (SmolLM2-Instruct) be taught to call them.

A template given here replaces the tokenizer's own (:func:`apply`) and is saved with the
tokenizer, so the trained model keeps it. Torch-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from align.errors import AlignError

HERE = Path(__file__).resolve().parent
NAMES = tuple(sorted(p.stem for p in HERE.glob("*.jinja")))


def template_text(spec: str) -> str:
    """The template ``spec`` names: a shipped one (``chatml-tools``) or a ``.jinja`` file."""
    if spec in NAMES:
        return (HERE / f"{spec}.jinja").read_text(encoding="utf-8")
    path = Path(spec).expanduser()
    if path.suffix == ".jinja" or path.exists():
        if not path.is_file():
            raise AlignError(f"--chat-template {spec}: no such file {path}")
        text = path.read_text(encoding="utf-8")
        if "messages" not in text:
            raise AlignError(f"--chat-template {spec}: {path} does not look like a Jinja chat "
                             "template (it never reads 'messages')")
        return text
    raise AlignError(f"--chat-template {spec!r}: not a template align ships "
                     f"({', '.join(NAMES)}) nor a .jinja file")


def turn_end(text: str) -> str | None:
    """The end-of-turn marker a ChatML template writes (``<|im_end|>``), or None."""
    return "<|im_end|>" if "<|im_end|>" in text else None


def apply(tokenizer: Any, spec: str | None) -> Any:
    """Give ``tokenizer`` the template ``spec`` (no-op for None); returns the tokenizer.

    A ChatML template needs ``<|im_end|>`` as one token of the vocabulary (the model must be
    able to end a turn with one token); it becomes the tokenizer's EOS, so generation stops
    and training ends sequences where the template ends a turn."""
    if not spec:
        return tokenizer
    text = template_text(spec)
    end = turn_end(text)
    if end is not None:
        ids = tokenizer.encode(end, add_special_tokens=False)
        if len(ids) != 1:
            raise AlignError(f"--chat-template {spec}: the model's vocabulary has no {end} token "
                             f"(it splits into {len(ids)} pieces), so the model could not end a "
                             "turn; use a ChatML model (SmolLM2, Qwen2.5) or a template written "
                             "in the model's own special tokens")
        if tokenizer.eos_token != end:
            tokenizer.eos_token = end
    tokenizer.chat_template = text
    return tokenizer
