"""The rule-reward flags every online algorithm takes (GRPO, RLOO, PPO): built-in functions, a
user function, and one weight per reward source; and how many of the scored answers each logged
step writes to ``samples.jsonl`` (:mod:`align.samples`).

One dataclass, so that the flags, their help and their checks are written once: GRPO's and
RLOO's ``OnlineArgs`` and PPO's ``PPOConfig`` extend it. This module imports nothing heavy
(``align --help`` reads it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from align.config import arg, parse_list
from align.rewards.builtin import BUILTIN_REWARDS, DEFAULT_FORMAT_PATTERN


@dataclass
class RewardArgs:
    """Reward functions and weights (the reward model is ``--reward-model``, a shared flag)."""

    reward_funcs: str | None = arg(
        None, "Built-in rewards, comma-separated: accuracy (final answer vs the 'solution' "
        "column), format (--format-pattern), length (--length-target).",
        source="ms-swift's GRPO rewards (accuracy, format); length: align", metavar="LIST")
    reward_fn: str | None = arg(
        None, "Your reward function, path/to/file.py:function_name; called as "
        "f(prompts, completions, **columns) -> list[float | None]. Imported only when named.",
        source="TRL reward-function signature", metavar="FILE:FN")
    reward_weights: str | None = arg(
        None, "One weight per reward source, comma-separated, in this order: reward model, "
        "--reward-funcs in order, --reward-fn (default: 1 each).", source="TRL default (1.0 each)",
        metavar="LIST")
    format_pattern: str = arg(
        DEFAULT_FORMAT_PATTERN, "Regex the whole completion must match for the format reward "
        "(re.DOTALL).", source="DeepSeek-R1 think/answer format")
    length_target: int | None = arg(
        None, "Target completion length in tokens for the length reward (required with it): "
        "1 at the target, 0 at zero or twice the target.",
        source="align (no default: your task's)", bounds="[1, inf)")
    log_samples: int = arg(
        4, "Sampled answers written to samples.jsonl at each logged step, with their prompt "
        "and reward (align board shows them); 0 writes none.",
        source="align default: a few prompts to read, about 4 KB per logged step",
        bounds="[0, inf)")

    def check_rewards(self) -> None:
        """The reward flags' own rules (raise ValueError; the CLI exits 2). Called from the
        ``__post_init__`` of the dataclasses that extend this one."""
        from align.rewards.plugin import parse_spec

        funcs = parse_list(self.reward_funcs)
        for name in funcs:
            if name not in BUILTIN_REWARDS:
                raise ValueError(f"--reward-funcs {name!r} is not valid; choose from "
                                 f"[{', '.join(BUILTIN_REWARDS)}] (your own: --reward-fn)")
        if len(set(funcs)) != len(funcs):
            raise ValueError(f"--reward-funcs names a function twice: {self.reward_funcs}")
        for w in parse_list(self.reward_weights):
            try:
                if not math.isfinite(float(w)):
                    raise ValueError
            except ValueError:
                raise ValueError(f"--reward-weights: {w!r} is not a number") from None
        try:
            re.compile(self.format_pattern)
        except re.error as e:
            raise ValueError(f"--format-pattern {self.format_pattern!r} is not a valid regex: "
                             f"{e}") from None
        if "length" in funcs and self.length_target is None:
            raise ValueError("--reward-funcs length needs --length-target N (tokens)")
        if self.reward_fn:
            parse_spec(self.reward_fn)
