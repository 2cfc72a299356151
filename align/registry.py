"""The algorithm registry: a flat table of records, one per algorithm.

The CLI (``align rlhf --algo``, ``align algos``) and the docs are generated from this table.
Each record names its data format, which extra models it needs, its config dataclass and its
runner. Runners live in ``align.algos.<name>`` (or ``align.ppo``) and import torch/TRL only
when called, so importing the registry stays cheap.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Callable

from align.config import LORA_LR_FACTOR, SHARED_GROUPS
from align.errors import AlignError
from align.agents.args import AgentArgs
from align.health.args import HealthArgs

REWARD_MODEL_USE = ("required", "optional", "no")
# Flag groups that only some algorithms take (named in AlgoSpec.extra_groups).
EXTRA_GROUPS: dict[str, type] = {"health": HealthArgs, "agents": AgentArgs}
# ms-swift's default for full fine-tuning (the offline algorithms, RM and SFT).
FULL_FT_LR = {"learning_rate": 1e-5}


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
    extra_groups: tuple[str, ...] = ()  # keys of EXTRA_GROUPS, e.g. ("health", "agents")
    # check(cfg, train_data, report): the algorithm's own pre-training checks, run by the runner
    # in dry runs and real runs alike before any model loads. Raises AlignError for a
    # configuration error; adds plan lines, notes and machine issues to the PlanReport
    # (align.plan). Must not load models or import user code.
    check: Callable[..., None] | None = None
    # Default learning rates for full fine-tuning, by config field (LoRA: x LORA_LR_FACTOR);
    # the first one is the policy's, which --learning-rate sets. Filled into the resolved
    # config by align.options.fill_learning_rates, so the saved config holds the rates used.
    default_lrs: dict[str, float] = field(default_factory=lambda: dict(FULL_FT_LR))
    lr_source: str = "ms-swift defaults (1e-5 full fine-tuning, 1e-4 LoRA)"
    # Computes the defaults from the config instead (the training mode's factor included), for
    # an algorithm whose defaults depend on the model: PPO's on the policy's size
    # (align.ppo.plan.default_lrs). ``default_lrs`` still names the fields, in order.
    default_lrs_for: Callable[[Any], dict[str, float]] | None = None

    def __post_init__(self) -> None:
        if self.reward_model not in REWARD_MODEL_USE:
            raise ValueError(f"reward_model must be one of {REWARD_MODEL_USE}")
        unknown = set(self.extra_groups) - set(EXTRA_GROUPS)
        if unknown:
            raise ValueError(f"unknown extra groups {sorted(unknown)}")

    def groups(self) -> dict[str, type]:
        """Every flag group this algorithm takes: shared, extra, then its own."""
        return {**SHARED_GROUPS, **{g: EXTRA_GROUPS[g] for g in self.extra_groups},
                self.name: self.config_cls}

    def default_learning_rate(self, name: str, lora: bool) -> float:
        """The default of learning-rate field ``name`` in this training mode (LoRA/QLoRA:
        x LORA_LR_FACTOR)."""
        return self.default_lrs[name] * (LORA_LR_FACTOR if lora else 1.0)


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


def flag_owners() -> dict[str, list[str]]:
    """For every algorithm-specific field name, the algorithms that take it."""
    owners: dict[str, list[str]] = {}
    for spec in ALGOS.values():
        for group, cls in spec.groups().items():
            if group in SHARED_GROUPS:
                continue
            for f in dataclasses.fields(cls):
                owners.setdefault(f.name, []).append(spec.name)
    return owners


def _register_builtins() -> None:
    from align.algos import cpo, dpo, grpo, kto, online, orpo, rloo, rm, sft, simpo
    from align.ppo import config as ppo_config
    from align.ppo import plan as ppo_plan

    def ppo_run(cfg: Any, data: Any, eval_data: Any = None) -> Any:
        from align.ppo.trainer import run

        return run(cfg, data, eval_data)

    for spec in (
        AlgoSpec("ppo", "prompt", ppo_config.PPOConfig, ppo_run, needs_ref=True,
                 reward_model="optional", online=True, extra_groups=("health", "agents"),
                 check=ppo_plan.check, default_lrs={"actor_lr": 5e-7, "critic_lr": 9e-6},
                 default_lrs_for=ppo_plan.default_lrs,
                 lr_source="by the policy's size (align/ppo/plan.py LR_BANDS: OpenRLHF for 7B, "
                           "TRL for 1B, SmolLM2-135M runs below); x10 for LoRA (the actor 1e-4 "
                           "below 1B, as measured)",
                 summary="Actor-critic RLHF with a reward model and/or rule rewards, token-level KL "
                         "and GAE",
                 paper="https://arxiv.org/abs/1707.06347"),
        AlgoSpec("dpo", "pairwise", dpo.DPOArgs, dpo.run, needs_ref=True, reward_model="no",
                 extra_groups=("health",),
                 summary="Direct Preference Optimization (+ RPO SFT mixing)",
                 paper="https://arxiv.org/abs/2305.18290"),
        AlgoSpec("kto", "unpaired", kto.KTOArgs, kto.run, needs_ref=True, reward_model="no",
                 extra_groups=("health",), check=kto.check,
                 summary="Kahneman-Tversky Optimization on thumbs-up/down data",
                 paper="https://arxiv.org/abs/2402.01306"),
        AlgoSpec("cpo", "pairwise", cpo.CPOArgs, cpo.run, needs_ref=False, reward_model="no",
                 extra_groups=("health",),
                 summary="Contrastive Preference Optimization (reference-free, + NLL)",
                 paper="https://arxiv.org/abs/2401.08417"),
        AlgoSpec("orpo", "pairwise", orpo.ORPOArgs, orpo.run, needs_ref=False,
                 reward_model="no", extra_groups=("health",), summary="Odds-Ratio Preference Optimization (SFT + odds ratio)",
                 paper="https://arxiv.org/abs/2403.07691"),
        AlgoSpec("simpo", "pairwise", simpo.SimPOArgs, simpo.run, needs_ref=False,
                 reward_model="no", extra_groups=("health",), summary="Simple Preference Optimization (length-normalised, margin)",
                 paper="https://arxiv.org/abs/2405.14734"),
        AlgoSpec("grpo", "prompt", grpo.GRPOArgs, grpo.run, needs_ref=True,
                 reward_model="optional", online=True, extra_groups=("health", "agents"),
                 check=online.check, default_lrs={"learning_rate": 1e-6},
                 lr_source="TRL's GRPO/RLOO default (1e-6); x10 for LoRA",
                 summary="Group Relative Policy Optimization with reward functions or a model",
                 paper="https://arxiv.org/abs/2402.03300"),
        AlgoSpec("rloo", "prompt", rloo.RLOOArgs, rloo.run, needs_ref=True,
                 reward_model="optional", online=True, extra_groups=("health",),
                 check=online.check, default_lrs={"learning_rate": 1e-6},
                 lr_source="TRL's GRPO/RLOO default (1e-6); x10 for LoRA",
                 summary="REINFORCE Leave-One-Out: GRPO's rewards with a leave-one-out baseline",
                 paper="https://arxiv.org/abs/2402.14740"),
        AlgoSpec("rm", "pairwise", rm.RMArgs, rm.run, needs_ref=False, reward_model="no",
                 summary="Reward model training (Bradley-Terry on preference pairs)",
                 paper="https://arxiv.org/abs/2203.02155"),
        AlgoSpec("sft", "sft", sft.SFTArgs, sft.run, needs_ref=False, reward_model="no",
                 check=sft.check,
                 summary="Supervised fine-tuning, the stage before all of the above",
                 paper="https://arxiv.org/abs/2203.02155"),
    ):
        register(spec)


_register_builtins()
