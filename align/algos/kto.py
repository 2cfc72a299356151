"""KTO (Ethayarajh et al. 2024) on TRL's KTOTrainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from align.config import arg
from align.errors import AlignError


@dataclass
class KTOArgs:
    beta: float = arg(0.1, "KL strength β.", source="ms-swift RLHF guide")
    desirable_weight: float = arg(1.0, "λ_D: loss weight of desirable (label true) examples.",
                                  source="ms-swift RLHF guide")
    undesirable_weight: float = arg(1.0, "λ_U: loss weight of undesirable (label false) examples.",
                                    source="ms-swift RLHF guide")


def run(cfg: Any, data: Any, eval_data: Any = None) -> dict[str, Any]:
    raise AlignError("kto training is not implemented yet")
