"""Finding the prompt of a preference pair as TRL does, and checking answers that repeat it.

A pair without a ``prompt`` field has an *implicit* prompt: the leading part that ``chosen``
and ``rejected`` share (TRL's ``extract_prompt``). align cuts it where a turn starts, never
inside an answer:

- message lists: the shared leading messages, backed off to end on a user (or tool) turn;
- strings: the shared leading text, cut right after the last assistant-turn marker in it
  (HH-RLHF's ``"\\n\\nAssistant:"``, ChatML's ``"<|im_start|>assistant\\n"``, ...), or, in text
  without markers, before the whitespace where the answers start (TRL moves that space into
  the answers too, so that ``prompt + chosen`` is the original text).

A pair *with* a prompt whose chosen/rejected message lists start with the prompt again
(HuggingFaceH4/ultrafeedback_binarized: ``prompt`` is a string, chosen and rejected are
``[user turn, assistant reply]``) has the repeated turns stripped, after checking that they
are the prompt.

Functions raise :class:`PromptError` (field, message) for pairs that have no usable prompt.
"""

from __future__ import annotations

import os
from typing import Any

# Where an assistant turn starts in rendered chat text; the prompt ends right after one.
ASSISTANT_MARKERS = (
    "\n\nAssistant:",  # Anthropic HH-RLHF, Dahoas/rm-static
    "<|im_start|>assistant\n",  # ChatML (Qwen, SmolLM)
    "<|start_header_id|>assistant<|end_header_id|>\n\n",  # Llama 3
    "<|assistant|>\n",  # Zephyr, Phi-3
    "<start_of_turn>model\n",  # Gemma
    "[/INST]",  # Llama 2, Mistral
    "### Response:",  # Alpaca
)


class PromptError(ValueError):
    """A pair whose prompt cannot be found or does not match; ``field`` names where."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


def split_text_pair(chosen: str, rejected: str) -> tuple[str, str, str]:
    """``(prompt, chosen_answer, rejected_answer)`` of two strings with an implicit prompt.

    >>> split_text_pair("\\n\\nHuman: hi\\n\\nAssistant: hello", "\\n\\nHuman: hi\\n\\nAssistant: go")
    ('\\n\\nHuman: hi\\n\\nAssistant:', ' hello', ' go')
    """
    shared = os.path.commonprefix([chosen, rejected])
    cut = max((shared.rfind(m) + len(m) for m in ASSISTANT_MARKERS if m in shared), default=-1)
    if cut < 0:
        # No turn markers: the answers start at the whitespace before the first word in which
        # they differ ("The sky is| blue." / "The sky is| green.").
        cut = len(shared)
        while cut > 0 and not (cut < len(chosen) and chosen[cut].isspace()
                               and cut < len(rejected) and rejected[cut].isspace()):
            cut -= 1
    prompt = chosen[:cut]
    if not prompt.strip():
        raise PromptError("prompt", "missing field 'prompt', and chosen and rejected share no "
                                    "leading text to take it from; add a 'prompt' field")
    answers = chosen[cut:], rejected[cut:]
    for name, answer in zip(("chosen", "rejected"), answers):
        if not answer.strip():
            raise PromptError(name, f"no answer after the prompt that chosen and rejected "
                                    f"share: {name} ends where the prompt does")
    return prompt, answers[0], answers[1]


def _leading_system(messages: list[dict[str, Any]]) -> int:
    n = 0
    while n < len(messages) and messages[n].get("role") == "system":
        n += 1
    return n


def shared_messages(chosen: list[dict[str, Any]], rejected: list[dict[str, Any]]) -> int:
    """How many leading messages form the shared prompt of two conversations: the common
    prefix, backed off to end on a user or tool turn.

    Raises PromptError when the system messages differ or nothing but a system message is
    shared (the user turns differ: the two answer different prompts).
    """
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    systems = max(_leading_system(chosen), _leading_system(rejected))
    if n < systems and (_leading_system(chosen) or _leading_system(rejected)):
        raise PromptError(f"rejected[{n}]",
                          "the system messages of chosen and rejected differ; a pair must "
                          "answer the same prompt: give both the same system message")
    common = n
    while n > 0 and chosen[n - 1].get("role") not in ("user", "tool"):
        n -= 1
    if n == 0 and common and _leading_system(chosen) >= common:
        raise PromptError(f"rejected[{common}]",
                          "chosen and rejected share only their system message: their first "
                          "user turns differ, so they answer different prompts")
    if n == 0:
        raise PromptError("prompt", "missing field 'prompt', and chosen and rejected share no "
                                    "leading user message to take it from; add a 'prompt' field")
    return n


def strip_repeated_prompt(prompt: Any, chosen: list[dict[str, Any]],
                          rejected: list[dict[str, Any]]
                          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                     list[dict[str, Any]]]:
    """``(prompt_messages, chosen_reply, rejected_reply)`` for a pair whose chosen and
    rejected repeat the prompt before their reply (HuggingFaceH4/ultrafeedback_binarized).

    The repeated turns must be the prompt: for a string prompt, the last user turn they share
    holds the same text (surrounding whitespace aside); for a message-list prompt, they are
    the same messages. The result's prompt is the repeated messages (with any system message),
    so prompt and answers are all message lists.
    """
    n = shared_messages(chosen, rejected)
    repeated = chosen[:n]
    if isinstance(prompt, str):
        last_user = next((m for m in reversed(repeated) if m.get("role") == "user"), None)
        text = last_user.get("content") if last_user else None
        matches = isinstance(text, str) and text.strip() == prompt.strip()
    else:
        matches = repeated == prompt
    if not matches:
        raise PromptError("chosen", "chosen and rejected start with a conversation that is not "
                                    "the 'prompt' field (their last shared user turn differs "
                                    "from it); drop 'prompt' to take the prompt from chosen and "
                                    "rejected, or keep only the reply in them")
    return repeated, chosen[n:], rejected[n:]
