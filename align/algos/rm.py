"""Reward-model training (Bradley-Terry, Ouyang et al. 2022) on TRL's RewardTrainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from align.config import arg
from align.errors import AlignError


@dataclass
class RMArgs:
    center_rewards_coefficient: float | None = arg(
        None, "Pull mean rewards towards zero (Eisenstein et al. 2023); e.g. 0.01.",
        source="TRL default")


def run(cfg: Any, data: Any, eval_data: Any = None) -> dict[str, Any]:
    raise AlignError("rm training is not implemented yet")
