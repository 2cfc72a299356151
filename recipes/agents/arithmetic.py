"""A tool and a rule reward for training a model to multiply with a calculator.

The same file works in TRL (``GRPOTrainer(tools=[multiply], reward_funcs=[exact_answer])``)
and in align, which imports it only when named on the command line:

    align sft  --model M --dataset sft.jsonl --chat-template chatml-tools ...
    align rlhf --algo grpo --model SFT_DIR --dataset train.jsonl \
        --tools recipes/agents/arithmetic.py:multiply \
        --reward-fn recipes/agents/arithmetic.py:exact_answer
    align generate --model GRPO_DIR --prompts test.jsonl \
        --tools recipes/agents/arithmetic.py:multiply --output answers.jsonl

The data (``python scripts/agent_task_data.py DIR``) has an ``answer`` column: the product.
"""

from __future__ import annotations

import re

_NUMBER = re.compile(r"-?\d[\d,]*")


def multiply(a: int, b: int) -> int:
    """Multiply two integers exactly.

    Args:
        a: The first factor.
        b: The second factor.

    Returns:
        The product a * b.
    """
    return int(a) * int(b)


def final_number(text: str) -> int | None:
    """The last integer written in ``text`` (thousands separators allowed), or None."""
    found = _NUMBER.findall(text or "")
    if not found:
        return None
    try:
        return int(found[-1].replace(",", ""))
    except ValueError:
        return None


def final_text(completion) -> str:
    """What the model said last: the content of the last assistant message of a multi-turn
    completion (tool calls and tool results before it are not the answer), or the text."""
    if isinstance(completion, str):
        return completion
    for message in reversed(completion):
        if message.get("role") == "assistant":
            return message.get("content") or ""
    return ""


def exact_answer(prompts, completions, answer=None, **kwargs):
    """1.0 when the last number of the model's final answer is the product, else 0.0.

    Rows without an ``answer`` get None (no opinion)."""
    rewards = []
    for i, completion in enumerate(completions):
        if answer is None or answer[i] is None:
            rewards.append(None)
            continue
        rewards.append(1.0 if final_number(final_text(completion)) == int(answer[i]) else 0.0)
    return rewards
