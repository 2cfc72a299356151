"""The algorithm registry: a flat table of records, one per algorithm.

The CLI (``align rlhf --algo``, ``align algos``) and the docs are generated from this table.
Each record names its data format, which extra models it needs, its config dataclass and its
runner. Runners live in ``align.algos.<name>`` (or ``align.ppo``) and import torch/TRL only
when called, so importing the registry stays cheap.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable

from align.errors import AlignError

REWARD_MODEL_USE = ("required", "optional", "no")


@dataclass(frozen=True)
class AlgoSpec:
    """One algorithm: what data it takes, what models it loads, how it is configured and run."""

    name: str
    data_format: str  # a key of align.data.FORMATS
    config_cls: type  # the algorithm's own dataclass of flags
    run: Callable[..., Any]  # run(cfg, train: Validated, eval: Validated | None) -> final metrics
    needs_ref: bool  # loads a frozen reference model (or uses the LoRA base as one)
    reward_model: str  # "required" | "optional" | "no"
    summary: str
    paper: str
    online: bool = False  # generates its own samples during training

    def __post_init__(self) -> None:
        if self.reward_model not in REWARD_MODEL_USE:
            raise ValueError(f"reward_model must be one of {REWARD_MODEL_USE}")


ALGOS: dict[str, AlgoSpec] = {}


def register(spec: AlgoSpec) -> AlgoSpec:
    """Add ``spec`` to the table; a second algorithm under the same name is an error."""
    if spec.name in ALGOS:
        raise ValueError(f"algorithm {spec.name!r} is already registered")
    ALGOS[spec.name] = spec
    return spec


def get_algo(name: str) -> AlgoSpec:
    """Look an algorithm up by name; unknown names list the known ones and the closest."""
    if name in ALGOS:
        return ALGOS[name]
    close = difflib.get_close_matches(name, list(ALGOS), n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise AlignError(f"unknown algorithm '{name}'. Known: {', '.join(ALGOS)}.{hint}")


def _register_builtins() -> None:
    from align.algos import cpo, dpo, grpo, kto, orpo, rm, sft, simpo
    from align.ppo import config as ppo_config

    def ppo_run(cfg: Any, data: Any, eval_data: Any = None) -> Any:
        from align.ppo.trainer import run

        return run(cfg, data, eval_data)

    for spec in (
        AlgoSpec("ppo", "prompt", ppo_config.PPOConfig, ppo_run, needs_ref=True,
                 reward_model="required", online=True,
                 summary="Actor-critic RLHF with a reward model, token-level KL and GAE",
                 paper="https://arxiv.org/abs/1707.06347"),
        AlgoSpec("dpo", "pairwise", dpo.DPOArgs, dpo.run, needs_ref=True, reward_model="no",
                 summary="Direct Preference Optimization (+ RPO SFT mixing)",
                 paper="https://arxiv.org/abs/2305.18290"),
        AlgoSpec("kto", "unpaired", kto.KTOArgs, kto.run, needs_ref=True, reward_model="no",
                 summary="Kahneman-Tversky Optimization on thumbs-up/down data",
                 paper="https://arxiv.org/abs/2402.01306"),
        AlgoSpec("cpo", "pairwise", cpo.CPOArgs, cpo.run, needs_ref=False, reward_model="no",
                 summary="Contrastive Preference Optimization (reference-free, + NLL)",
                 paper="https://arxiv.org/abs/2401.08417"),
        AlgoSpec("orpo", "pairwise", orpo.ORPOArgs, orpo.run, needs_ref=False,
                 reward_model="no", summary="Odds-Ratio Preference Optimization (SFT + odds ratio)",
                 paper="https://arxiv.org/abs/2403.07691"),
        AlgoSpec("simpo", "pairwise", simpo.SimPOArgs, simpo.run, needs_ref=False,
                 reward_model="no", summary="Simple Preference Optimization (length-normalised, margin)",
                 paper="https://arxiv.org/abs/2405.14734"),
        AlgoSpec("grpo", "prompt", grpo.GRPOArgs, grpo.run, needs_ref=True,
                 reward_model="optional", online=True,
                 summary="Group Relative Policy Optimization with reward functions or a model",
                 paper="https://arxiv.org/abs/2402.03300"),
        AlgoSpec("rm", "pairwise", rm.RMArgs, rm.run, needs_ref=False, reward_model="no",
                 summary="Reward model training (Bradley-Terry on preference pairs)",
                 paper="https://arxiv.org/abs/2203.02155"),
        AlgoSpec("sft", "sft", sft.SFTArgs, sft.run, needs_ref=False, reward_model="no",
                 summary="Supervised fine-tuning, the stage before all of the above",
                 paper="https://arxiv.org/abs/2203.02155"),
    ):
        register(spec)


_register_builtins()
