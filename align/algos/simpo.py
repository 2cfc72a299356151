"""SimPO (Meng et al. 2024) through TRL's experimental CPOTrainer (loss_type simpo).

TRL's SimPO term is −log σ(β (mean log π(y_w) − mean log π(y_l)) − γ); with --cpo-alpha > 0
CPO's NLL on the chosen answer is added (ms-swift's default, "CPO-SimPO").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from align.config import arg, validate_fields


@dataclass
class SimPOArgs:
    beta: float = arg(2.0, "Scale of the length-normalised reward.", source="ms-swift RLHF guide",
                      bounds="(0, inf)")
    simpo_gamma: float = arg(1.0, "Target reward margin γ.", source="ms-swift RLHF guide")
    cpo_alpha: float = arg(1.0, "NLL loss weight mixed in for stability; 0 is the original "
                           "SimPO.", source="ms-swift RLHF guide", bounds="[0, inf)")

    def __post_init__(self) -> None:
        validate_fields(self)


def build_trainer(cfg: Any, data: Any, eval_data: Any = None,
                  callbacks: Sequence[Any] = ()) -> tuple[Any, Any]:
    """A CPOTrainer in SimPO mode for ``cfg`` (see align.algos.common)."""
    from align.algos.cpo import build_cpo_trainer

    a: SimPOArgs = cfg.algo
    return build_cpo_trainer(cfg, data, eval_data, callbacks, loss_type="simpo", beta=a.beta,
                             simpo_gamma=a.simpo_gamma, cpo_alpha=a.cpo_alpha)


def run(cfg: Any, data: Any, eval_data: Any = None) -> dict[str, Any]:
    from align.algos import watched

    return watched.run_trainer(cfg, build_trainer, data, eval_data)
