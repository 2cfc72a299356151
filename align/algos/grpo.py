"""GRPO (Shao et al. 2024, DeepSeekMath) on TRL's GRPOTrainer.

No critic: each prompt gets ``--num-generations`` completions, and a completion's advantage is
its reward minus the group's mean (divided by the group's std with ``--scale-rewards group``).
The policy loss is PPO's clipped surrogate; a KL term to the reference is added with weight
``--beta``. Rewards come from a reward model, built-in functions and/or a user function
(:mod:`align.rewards`); the run around the trainer is :func:`align.algos.online.run_online`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from align.algos.online import OnlineArgs
from align.config import arg

# TRL 1.16 GRPOConfig.loss_type values that need no other setting (luspo needs sequence-level
# importance sampling, vespo vLLM's importance-sampling correction).
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo")
SCALE_REWARDS = ("group", "batch", "none")


@dataclass
class GRPOArgs(OnlineArgs):
    loss_type: str = arg(
        "dapo", "How token losses are averaged: grpo (per sequence, then batch: the paper's, "
        "length-biased), dr_grpo (constant max length), dapo (tokens in the global batch), "
        "bnpo (tokens in the local batch), cispo, sapo.", source="TRL default (DAPO paper)",
        choices=LOSS_TYPES)
    scale_rewards: str = arg(
        "group", "Divide advantages by the reward std of the group, of the batch, or none "
        "(Dr. GRPO: none avoids a difficulty bias).", source="TRL default (GRPO paper)",
        choices=SCALE_REWARDS)
    importance_sampling_level: str = arg(
        "token", "Policy ratio per token (GRPO) or per sequence (GSPO, Zheng et al. 2025).",
        source="TRL default", choices=("token", "sequence"))


def run(cfg: Any, data: Any, eval_data: Any = None) -> dict[str, Any]:
    """Train with GRPO; returns final metrics (with eval_reward_before/after given eval data)."""
    from trl import GRPOConfig, GRPOTrainer

    from align.algos.online import run_online

    a: GRPOArgs = cfg.algo
    return run_online(cfg, data, eval_data, GRPOConfig, GRPOTrainer, loss_type=a.loss_type,
                      scale_rewards=a.scale_rewards,
                      importance_sampling_level=a.importance_sampling_level)
