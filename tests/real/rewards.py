"""The reward function GRPO trains with in the real-model suite (``--reward-fn`` names it).

It is the gold measure of tests/real/task.py applied to the training prompts, whose topic
words are the prompt's own content words, plus a dense term so that a group of answers that
all run out of tokens still ranks the shorter ones higher:

    reward = gold(answer) + 0.5 * substance * (1 - tokens / 96)

Whether an answer ended is read from its token ids (TRL passes ``completion_ids``); the EOS
id comes from the model directory's tokenizer (``$ALIGN_REAL_MODEL`` or the default).
"""

from __future__ import annotations

import functools
from typing import Any

from tests.real import harness, task

BUDGET = 96  # the --max-completion-length of the GRPO runs
_STOP = {"what", "who", "why", "how", "was", "the", "is", "are", "does", "do", "of", "a", "an",
         "in", "made", "from", "causes", "we", "have"}


@functools.lru_cache(maxsize=1)
def _eos_id() -> int:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(harness.model_dir())).eos_token_id


def topic_words(prompt: Any) -> tuple[str, ...]:
    text = prompt[-1]["content"] if isinstance(prompt, list) else str(prompt)
    return tuple(w for w in task.words(text) if w not in _STOP and len(w) > 2)


def concise_reward(prompts: list[Any], completions: list[Any],
                   completion_ids: list[list[int]] | None = None, **_: Any) -> list[float]:
    eos = _eos_id()
    rewards = []
    for prompt, completion, ids in zip(prompts, completions, completion_ids or []):
        text = completion[-1]["content"] if isinstance(completion, list) else completion
        keys = topic_words(prompt)
        ended = eos in ids
        substance = task.has_substance(text, keys)
        dense = 0.5 * substance * (1 - min(len(ids), BUDGET) / BUDGET)
        rewards.append(task.gold(text, ended, keys) + dense)
    return rewards


def word_variety(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
    """Distinct words over words: differs between almost any two samples, so a smoke run's
    group advantages are never all zero and its few steps always move the weights."""
    out = []
    for completion in completions:
        ws = task.words(completion[-1]["content"] if isinstance(completion, list) else completion)
        out.append(len(set(ws)) / len(ws) if ws else 0.0)
    return out
