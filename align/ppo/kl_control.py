"""The KL coefficient β: fixed, or adapted towards a target KL (Ziegler et al. 2019, sec. 2.2).

Adaptive rule: e = clip(KL / KL_target - 1, -0.2, 0.2);  β ← β · (1 + e · n / horizon), where n is
the number of samples in the batch that measured KL (nats per response).
"""

from __future__ import annotations

from typing import Any


class KLController:
    """β for the token-level KL penalty; ``update`` is a no-op unless a target is set (a target
    of 0 is off)."""

    def __init__(self, kl_coef: float, target: float = 0.0, horizon: int = 10000) -> None:
        self.value = float(kl_coef)
        self.target = target
        self.horizon = horizon

    @property
    def adaptive(self) -> bool:
        return bool(self.target)

    def update(self, current_kl: float, n_samples: int) -> None:
        """Move β towards the target after a batch of ``n_samples`` with mean KL ``current_kl``."""
        if not self.target:
            return
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_samples / self.horizon

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])
