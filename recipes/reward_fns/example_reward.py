"""An example reward function for `align rlhf --algo grpo` (or rloo), to copy and adapt.

align imports this file only when you name it on the command line:

    align rlhf --algo grpo --model Qwen/Qwen2.5-0.5B-Instruct \
        --dataset data_formats/prompt.jsonl \
        --reward-fn recipes/reward_fns/example_reward.py:correct_and_concise

The function receives, as keyword arguments:
- prompts:      one per completion (a prompt appears --num-generations times in a row)
- completions:  strings, or lists of {"role", "content"} messages for chat data
- every other dataset column by name (here `solution`), one value per completion
- what TRL adds: completion_ids (token ids), trainer_state, log_metric(name, value), log_extra
It returns one float per completion, or None where it has no opinion (TRL leaves it out).
Declare the arguments you use and end with **kwargs so that new ones do not break it.
"""

from __future__ import annotations

import re

ANSWER = re.compile(r"answer\s*:\s*(-?[\d,]*\.?\d+)", re.IGNORECASE)


def _text(completion):
    """Chat completions are lists of messages: score the assistant's last turn."""
    if isinstance(completion, str):
        return completion
    return completion[-1]["content"]


def correct_and_concise(prompts, completions, solution=None, completion_ids=None,
                        log_metric=None, **kwargs):
    """1 for the right number after 'Answer:', 0 otherwise, minus 0.1 per 100 tokens.

    Rows without a solution get None. `log_metric` puts a number in metrics.jsonl.
    """
    rewards = []
    for i, completion in enumerate(completions):
        if solution is None or solution[i] is None:
            rewards.append(None)
            continue
        found = ANSWER.findall(_text(completion))
        correct = bool(found) and float(found[-1].replace(",", "")) == float(solution[i])
        length = len(completion_ids[i]) if completion_ids is not None else 0
        rewards.append(float(correct) - 0.1 * length / 100)
    if log_metric is not None and completions:
        log_metric("example/answered_frac",
                   sum(bool(ANSWER.search(_text(c))) for c in completions) / len(completions))
    return rewards
