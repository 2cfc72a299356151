"""DPO (Rafailov et al. 2023) with RPO mixing (Pang et al. 2024) on TRL's DPOTrainer.

RPO: ``loss = dpo_loss + rpo_alpha * NLL(chosen)``; in TRL 1.16 this is
``loss_type=[..., "sft"]`` with ``loss_weights=[..., rpo_alpha]``. TRL's "sft" term is the
mean NLL over all chosen-answer tokens of the batch (see rpo_loss in tests/reference_losses.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from align.config import arg, parse_list, validate_fields

# TRL 1.16 DPOConfig.loss_type values (besides "sft", which --rpo-alpha adds).
LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair",
              "sppo_hard", "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop",
              "sigmoid_norm", "sft")
# The loss types whose TRL 1.16 formula reads label_smoothing; the others ignore it.
SMOOTHED = ("robust", "exo_pair", "aot", "aot_unpaired")


@dataclass
class DPOArgs:
    beta: float = arg(0.1, "KL strength β: larger keeps the policy closer to the reference "
                      "(for ipo: the regulariser τ).", source="ms-swift RLHF guide",
                      bounds="(0, inf)")
    loss_type: str = arg("sigmoid", "Loss variant(s), comma-separated to combine: "
                         + ", ".join(LOSS_TYPES[:-1]) + ".", source="TRL default")
    loss_weights: str | None = arg(None, "Weights for the --loss-type list, comma-separated "
                                   "(default: 1 each).", source="TRL default")
    rpo_alpha: float = arg(1.0, "Weight of the SFT (NLL) loss on the chosen answer added to "
                           "DPO (RPO); 0 is pure DPO.", source="ms-swift RLHF guide",
                           bounds="[0, inf)")
    label_smoothing: float = arg(0.0, "Assumed label-flip rate ε, read by the robust, "
                                 "exo_pair, aot and aot_unpaired losses.", source="TRL default",
                                 bounds="[0, 0.5)")
    ld_alpha: float | None = arg(
        None, "LD-DPO: weight of each answer's tokens beyond the length of the shorter answer "
        "of its pair (0 drops them, 1 is plain DPO): makes the preference less about length, "
        "against DPO's drift to verbosity.",
        source="TRL default (off)", metavar="FLOAT", bounds="[0, 1]")
    precompute_ref_logps: bool = arg(
        False, "Compute the reference log-probs once before training, then free the "
        "reference (saves memory and a forward per step; needs a pass over the data first: "
        "each prompt once with its answers after it, without autograd, only the rows the "
        "run's steps reach). Cached under "
        "$ALIGN_CACHE (~/.cache/align), keyed on the tokenized data, the reference weights "
        "and the settings that can change a log-prob: a rerun reads them back, into any "
        "--output-dir.",
        source="TRL default (off)")

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
        try:
            [float(w) for w in weights]
        except ValueError as e:
            raise ValueError(f"--loss-weights {self.loss_weights!r}: expected numbers") from e
        validate_fields(self)
        # TRL 1.16's sigmoid loss no longer reads label_smoothing: refuse rather than
        # silently train something else than asked.
        if self.label_smoothing > 0 and not set(types) & set(SMOOTHED):
            raise ValueError(f"--label-smoothing is read only by the {', '.join(SMOOTHED)} "
                             "losses; add one to --loss-type (robust is rDPO) or drop it")
        if "exo_pair" in types and self.label_smoothing == 0:
            raise ValueError("--loss-type exo_pair needs --label-smoothing > 0 (the EXO paper "
                             "suggests 1e-3)")

    def trl_losses(self) -> tuple[list[str], list[float] | None]:
        """TRL's (loss_type, loss_weights), with RPO's SFT term appended when rpo_alpha > 0."""
        types = parse_list(self.loss_type)
        weights = [float(w) for w in parse_list(self.loss_weights)] or None
        if self.rpo_alpha > 0 and "sft" not in types:
            weights = (weights or [1.0] * len(types)) + [self.rpo_alpha]
            types = types + ["sft"]
        return types, weights


def build_trainer(cfg: Any, data: Any, eval_data: Any = None,
                  callbacks: Sequence[Any] = ()) -> tuple[Any, Any]:
    """A DPOTrainer for ``cfg`` (see align.algos.common for the adapter pattern)."""
    from trl import DPOConfig, DPOTrainer

    from align.algos import common, ref_logps

    a: DPOArgs = cfg.algo
    loss_type, loss_weights = a.trl_losses()
    args = common.trl_config(cfg, DPOConfig, has_eval=eval_data is not None, beta=a.beta,
                             loss_type=loss_type, loss_weights=loss_weights,
                             label_smoothing=a.label_smoothing, ld_alpha=a.ld_alpha,
                             precompute_ref_log_probs=a.precompute_ref_logps)
    tokenizer = common.load_tokenizer(cfg, data)
    model = common.load_policy(cfg)
    # With LoRA and no --ref-model, TRL uses the base with adapters disabled as the reference.
    ref = common.load_reference(cfg)
    trainer_cls = common.content_keyed(ref_logps.dpo_trainer(DPOTrainer))
    trainer = trainer_cls(model=model, ref_model=ref, args=args,
                          **common.trainer_inputs(cfg, tokenizer, data, eval_data, callbacks,
                                                  on_disk=a.precompute_ref_logps))
    return trainer, tokenizer


def run(cfg: Any, data: Any, eval_data: Any = None) -> dict[str, Any]:
    from align.algos import watched

    return watched.run_trainer(cfg, build_trainer, data, eval_data)
