"""SimPO (Meng et al. 2024) through TRL's experimental CPOTrainer (loss_type simpo)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from align.config import arg
from align.errors import AlignError


@dataclass
class SimPOArgs:
    beta: float = arg(2.0, "Scale of the length-normalised reward.", source="ms-swift RLHF guide")
    simpo_gamma: float = arg(1.0, "Target reward margin γ.", source="ms-swift RLHF guide")
    cpo_alpha: float = arg(1.0, "NLL loss weight mixed in for stability; 0 is the original "
                           "SimPO.", source="ms-swift RLHF guide")


def run(cfg: Any, data: Any, eval_data: Any = None) -> dict[str, Any]:
    raise AlignError("simpo training is not implemented yet")
