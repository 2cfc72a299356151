"""ORPO (Hong et al. 2024) on TRL's experimental ORPOTrainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from align.config import arg
from align.errors import AlignError


@dataclass
class ORPOArgs:
    beta: float = arg(0.1, "λ: weight of the odds-ratio loss against the SFT loss.",
                      source="TRL default; ms-swift passes λ as --beta")


def run(cfg: Any, data: Any, eval_data: Any = None) -> dict[str, Any]:
    raise AlignError("orpo training is not implemented yet")
