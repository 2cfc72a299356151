"""PPOConfig: every PPO trick is one field with its default and where that default comes from."""

from __future__ import annotations

from dataclasses import dataclass

from align.config import arg


@dataclass
class PPOConfig:
    kl_coef: float = arg(0.05, "Token-level KL penalty β against the reference.",
                         source="ms-swift RLHF guide")
    cliprange: float = arg(0.2, "Clip range ε of the policy ratio.", source="ms-swift RLHF guide")
    cliprange_value: float = arg(0.2, "Clip range of the value update.",
                                 source="ms-swift RLHF guide")
    vf_coef: float = arg(0.1, "Value-loss weight.", source="ms-swift RLHF guide")
    gamma: float = arg(1.0, "Discount factor.", source="ms-swift RLHF guide")
    lam: float = arg(0.95, "GAE λ.", source="ms-swift RLHF guide")
    max_new_tokens: int = arg(128, "Longest sampled response in tokens.")
    temperature: float = arg(1.0, "Sampling temperature.")
