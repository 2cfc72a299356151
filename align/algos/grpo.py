"""GRPO (Shao et al. 2024) on TRL's GRPOTrainer with reward functions or a reward model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from align.config import arg
from align.errors import AlignError


@dataclass
class GRPOArgs:
    num_generations: int = arg(8, "Completions sampled per prompt (the group size G).",
                               source="TRL default")
    max_completion_length: int = arg(512, "Longest completion in tokens.", source="TRL default")
    temperature: float = arg(1.0, "Sampling temperature.", source="TRL default")
    beta: float = arg(0.04, "KL coefficient to the reference; 0 loads no reference model.",
                      source="ms-swift GRPO default")
    reward_funcs: str | None = arg(None, "Built-in rewards, comma-separated: accuracy, format, "
                                   "length.")
    reward_fn: str | None = arg(None, "Your reward function, path/to/file.py:function_name.",
                                metavar="FILE:FN")


def run(cfg: Any, data: Any, eval_data: Any = None) -> dict[str, Any]:
    raise AlignError("grpo training is not implemented yet")
