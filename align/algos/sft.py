"""Supervised fine-tuning on TRL's SFTTrainer: the stage before preference alignment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from align.config import arg
from align.errors import AlignError


@dataclass
class SFTArgs:
    completion_only_loss: bool = arg(
        True, "Compute the loss on completions (assistant turns) only, not on prompts.",
        source="TRL default")
    packing: bool = arg(False, "Pack several short examples into one sequence.")


def run(cfg: Any, data: Any, eval_data: Any = None) -> dict[str, Any]:
    raise AlignError("sft training is not implemented yet")
