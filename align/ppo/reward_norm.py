"""Running mean and standard deviation of reward-model scores (PPO-max reward normalisation).

Secrets of RLHF (Zheng et al. 2023, sec. 5.3) normalises scores with statistics kept over the
whole run, so the scale PPO sees stays steady while the RM's raw scale drifts. Batches are
merged with the parallel-variance formula of Chan et al. (1979).
"""

from __future__ import annotations

import math
from typing import Any, Sequence, TypeVar

T = TypeVar("T")  # a float, or a tensor of scores


class RunningMoments:
    """Mean and (population) variance of every score seen so far."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0  # sum of squared deviations from the mean

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.count) if self.count else 1.0

    def update(self, values: Sequence[float]) -> None:
        """Merge a batch of scores into the running statistics."""
        n = len(values)
        if n == 0:
            return
        batch_mean = sum(values) / n
        batch_m2 = sum((v - batch_mean) ** 2 for v in values)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.m2 += batch_m2 + delta ** 2 * self.count * n / total
        self.count = total

    def normalize(self, value: T, eps: float = 1e-8) -> T:
        """``value`` (a number or a tensor of scores) in units of the running statistics:
        (value - mean) / (std + eps)."""
        return (value - self.mean) / (self.std + eps)

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), float(state["mean"]), float(state["m2"])
