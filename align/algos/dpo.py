"""DPO (Rafailov et al. 2023) with RPO mixing (Pang et al. 2024) on TRL's DPOTrainer.

RPO: ``loss = dpo_loss + rpo_alpha * NLL(chosen)``; in TRL 1.16 this is
``loss_type=[..., "sft"]`` with ``loss_weights=[..., rpo_alpha]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from align.config import arg, parse_list

# TRL 1.16 DPOConfig.loss_type values (besides "sft", which --rpo-alpha adds).
LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair",
              "sppo_hard", "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft")


@dataclass
class DPOArgs:
    beta: float = arg(0.1, "KL strength β: larger keeps the policy closer to the reference.",
                      source="ms-swift RLHF guide")
    loss_type: str = arg("sigmoid", "DPO loss variant(s), comma-separated to combine: "
                         + ", ".join(LOSS_TYPES[:-1]) + ".", source="TRL default")
    loss_weights: str | None = arg(None, "Weights for the --loss-type list, comma-separated.")
    rpo_alpha: float = arg(1.0, "Weight of the SFT (NLL) loss on the chosen answer added to "
                           "DPO; 0 is pure DPO.", source="ms-swift RLHF guide")
    label_smoothing: float = arg(0.0, "Assumed label-noise rate (conservative DPO / robust).")

    def __post_init__(self) -> None:
        types = parse_list(self.loss_type)
        for t in types:
            if t not in LOSS_TYPES:
                raise ValueError(f"--loss-type {t!r} is not valid; choose from "
                                 f"[{', '.join(LOSS_TYPES)}]")
        if not types:
            raise ValueError("--loss-type needs at least one loss")
        weights = parse_list(self.loss_weights)
        if weights and len(weights) != len(types):
            raise ValueError(f"--loss-weights has {len(weights)} values for {len(types)} "
                             "--loss-type entries; give one weight per loss")
        if self.rpo_alpha < 0:
            raise ValueError(f"--rpo-alpha must be >= 0, got {self.rpo_alpha}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"--label-smoothing must be in [0, 0.5), got {self.label_smoothing}")

    def trl_losses(self) -> tuple[list[str], list[float] | None]:
        """TRL's (loss_type, loss_weights), with RPO's SFT term appended when rpo_alpha > 0."""
        types = parse_list(self.loss_type)
        weights = [float(w) for w in parse_list(self.loss_weights)] or None
        if self.rpo_alpha > 0 and "sft" not in types:
            weights = (weights or [1.0] * len(types)) + [self.rpo_alpha]
            types = types + ["sft"]
        return types, weights


def run(cfg: Any, data: Any, eval_data: Any = None) -> dict[str, Any]:
    from trl import DPOConfig, DPOTrainer

    from align.algos import common
    from align.models import load_causal_lm, load_tokenizer, lora_config

    a: DPOArgs = cfg.algo
    loss_type, loss_weights = a.trl_losses()
    args = common.trl_config(cfg, DPOConfig, has_eval=eval_data is not None, beta=a.beta,
                             loss_type=loss_type, loss_weights=loss_weights,
                             label_smoothing=a.label_smoothing)
    tokenizer = load_tokenizer(cfg.model.model, cfg.model)
    model = load_causal_lm(cfg.model.model, cfg.model, cfg.lora, cfg.train)
    # With LoRA and no --ref-model, TRL uses the base with adapters disabled as the reference.
    ref = load_causal_lm(cfg.model.ref_model, cfg.model, cfg.lora, cfg.train) \
        if cfg.model.ref_model else None
    resume_from, resume_step = common.resume_checkpoint(cfg)
    logger = common.metrics_logger(cfg, resume_step)
    trainer = DPOTrainer(model=model, ref_model=ref, args=args,
                         train_dataset=common.to_dataset(data),
                         eval_dataset=common.to_dataset(eval_data), processing_class=tokenizer,
                         peft_config=lora_config(cfg.lora), callbacks=[common.trainer_callback(logger)])
    return common.train_and_save(trainer, cfg, tokenizer, resume_from)
