"""CPO (Xu et al. 2024) on TRL's experimental CPOTrainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from align.config import arg
from align.errors import AlignError


@dataclass
class CPOArgs:
    beta: float = arg(0.1, "Scale of the implicit reward.", source="ms-swift RLHF guide")
    cpo_alpha: float = arg(1.0, "Weight of the NLL loss on the chosen answer.",
                           source="ms-swift RLHF guide")


def run(cfg: Any, data: Any, eval_data: Any = None) -> dict[str, Any]:
    raise AlignError("cpo training is not implemented yet")
