"""RLOO (Ahmadian et al. 2024, "Back to Basics") on TRL's RLOOTrainer.

Like GRPO it samples several completions per prompt and needs no critic, but each completion's
baseline is the mean reward of the *other* completions of its prompt (leave-one-out), and the
KL to the reference is subtracted from the sequence reward instead of added to the loss. It
takes the same reward sources and flags as GRPO (:class:`align.algos.online.OnlineArgs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from align.algos.online import OnlineArgs
from align.config import arg


@dataclass
class RLOOArgs(OnlineArgs):
    num_generations: int = arg(2, "Completions sampled per prompt (k; the baseline of each is "
                               "the mean of the other k-1; at least 2).", source="TRL default",
                               bounds="[2, inf)")
    beta: float = arg(0.05, "KL coefficient, subtracted from the sequence reward; 0 loads no "
                      "reference model.", source="TRL default", bounds="[0, inf)")
    normalize_advantages: bool = arg(False, "Normalise advantages over the batch (mean 0, std 1).",
                                     source="TRL default")


def run(cfg: Any, data: Any, eval_data: Any = None) -> dict[str, Any]:
    """Train with RLOO; returns final metrics (with eval_reward_before/after given eval data)."""
    from trl import RLOOConfig, RLOOTrainer

    from align.algos.online import run_online

    a: RLOOArgs = cfg.algo
    return run_online(cfg, data, eval_data, RLOOConfig, RLOOTrainer,
                      normalize_advantages=a.normalize_advantages)
