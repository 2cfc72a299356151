"""KTO (Ethayarajh et al. 2024) on TRL's KTOTrainer.

KTO estimates its reference point z₀ from mismatched (prompt, completion) pairs built inside
each batch, so TRL reads the data in order (no sampler shuffling); align shuffles the rows once
with --seed instead, so that batches mix desirable and undesirable examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from align.config import arg, validate_fields
from align.errors import AlignError

LOSS_TYPES = ("kto", "apo_zero_unpaired")
# The paper's recommended band for (λ_D · n_D) / (λ_U · n_U) (Ethayarajh et al. 2024, Eq. 8).
RATIO_LOW, RATIO_HIGH = 1.0, 4.0 / 3.0


@dataclass
class KTOArgs:
    beta: float = arg(0.1, "KL strength β.", source="ms-swift RLHF guide", bounds="(0, inf)")
    desirable_weight: float = arg(1.0, "λ_D: loss weight of desirable (label true) examples.",
                                  source="ms-swift RLHF guide", bounds="(0, inf)")
    undesirable_weight: float = arg(1.0, "λ_U: loss weight of undesirable (label false) examples.",
                                    source="ms-swift RLHF guide", bounds="(0, inf)")
    loss_type: str = arg("kto", "kto, or apo_zero_unpaired (APO-zero, D'Oosterlinck et al. "
                         "2024; no KL estimate).", source="TRL default")
    precompute_ref_logps: bool = arg(
        False, "Compute the reference log-probs once before training, then free the "
        "reference (saves memory; needs a pass over the data first). Cached under "
        "$ALIGN_CACHE (~/.cache/align), keyed on the tokenized data, the reference weights "
        "and the settings that can change a log-prob: a rerun reads them back, into any "
        "--output-dir.",
        source="TRL default (off)")

    def __post_init__(self) -> None:
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"--loss-type {self.loss_type!r} is not valid for kto; choose from "
                             f"[{', '.join(LOSS_TYPES)}]")
        validate_fields(self)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def weight_advice(n_desirable: int, n_undesirable: int, desirable_weight: float,
                  undesirable_weight: float) -> str | None:
    """A warning when (λ_D n_D) / (λ_U n_U) is outside [1, 4/3], naming the weight to change.

    Returns None when the ratio is in the band. The suggested values aim at the middle of the
    band (7/6); any value in the printed range works.
    """
    if n_desirable == 0 or n_undesirable == 0:
        kind = "desirable" if n_undesirable == 0 else "undesirable"
        return (f"warning: every example is {kind} (label "
                f"{'true' if kind == 'desirable' else 'false'}); KTO learns from both kinds, "
                "so add examples of the other kind")
    ratio = desirable_weight * n_desirable / (undesirable_weight * n_undesirable)
    if RATIO_LOW <= ratio <= RATIO_HIGH:
        return None
    # λ_D that puts the ratio in [1, 4/3] with λ_U fixed, and λ_U with λ_D fixed.
    d_lo = RATIO_LOW * undesirable_weight * n_undesirable / n_desirable
    d_hi = RATIO_HIGH * undesirable_weight * n_undesirable / n_desirable
    u_lo = desirable_weight * n_desirable / (RATIO_HIGH * n_undesirable)
    u_hi = desirable_weight * n_desirable / (RATIO_LOW * n_undesirable)
    mid = 7.0 / 6.0
    d_mid = mid * undesirable_weight * n_undesirable / n_desirable
    u_mid = desirable_weight * n_desirable / (mid * n_undesirable)
    head = (f"warning: KTO weight balance (λ_D·n_D)/(λ_U·n_U) = ({_fmt(desirable_weight)}·"
            f"{n_desirable})/({_fmt(undesirable_weight)}·{n_undesirable}) = {ratio:.3f} is "
            f"outside [1, 4/3], the range the KTO paper recommends")
    raise_d = (f"raise --desirable-weight from {_fmt(desirable_weight)} to {_fmt(d_mid)} "
               f"(anything in [{_fmt(d_lo)}, {_fmt(d_hi)}])")
    lower_d = (f"lower --desirable-weight from {_fmt(desirable_weight)} to {_fmt(d_mid)} "
               f"(anything in [{_fmt(d_lo)}, {_fmt(d_hi)}])")
    raise_u = (f"raise --undesirable-weight from {_fmt(undesirable_weight)} to {_fmt(u_mid)} "
               f"(anything in [{_fmt(u_lo)}, {_fmt(u_hi)}])")
    lower_u = (f"lower --undesirable-weight from {_fmt(undesirable_weight)} to {_fmt(u_mid)} "
               f"(anything in [{_fmt(u_lo)}, {_fmt(u_hi)}])")
    if ratio < RATIO_LOW:  # desirable examples weigh too little in total
        return f"{head}: {raise_d}, or {lower_u}"
    return f"{head}: {raise_u}, or {lower_d}"


def check(cfg: Any, data: Any, report: Any) -> None:
    """KTO's pre-training checks (``AlgoSpec.check``), for dry runs and real runs alike: the
    batch size the KL estimate needs, and :func:`weight_advice` for the training rows."""
    if cfg.algo.loss_type == "kto" and cfg.train.per_device_train_batch_size < 2:
        raise AlignError("--algo kto needs --per-device-train-batch-size of at least 2: the KL "
                         "reference point is estimated from mismatched pairs within a batch")
    n_desirable = sum(1 for r in data.rows if r["label"])
    report.plan(f"kto: {n_desirable} desirable and {len(data.rows) - n_desirable} undesirable "
                "examples")
    advice = weight_advice(n_desirable, len(data.rows) - n_desirable,
                           cfg.algo.desirable_weight, cfg.algo.undesirable_weight)
    if advice:
        report.note(advice)


def build_trainer(cfg: Any, data: Any, eval_data: Any = None,
                  callbacks: Sequence[Any] = ()) -> tuple[Any, Any]:
    """A KTOTrainer for ``cfg`` (see align.algos.common for the adapter pattern)."""
    from trl import KTOConfig, KTOTrainer

    from align.algos import common

    a: KTOArgs = cfg.algo
    args = common.trl_config(cfg, KTOConfig, has_eval=eval_data is not None, beta=a.beta,
                             desirable_weight=a.desirable_weight,
                             undesirable_weight=a.undesirable_weight, loss_type=a.loss_type,
                             precompute_ref_log_probs=a.precompute_ref_logps)
    tokenizer = common.load_tokenizer(cfg, data)
    model = common.load_policy(cfg)
    trainer_cls = common.content_keyed(KTOTrainer)
    trainer = trainer_cls(model=model, ref_model=common.load_reference(cfg), args=args,
                          **common.trainer_inputs(cfg, tokenizer, data, eval_data, callbacks,
                                                  shuffle=True, on_disk=a.precompute_ref_logps))
    return trainer, tokenizer


def run(cfg: Any, data: Any, eval_data: Any = None) -> dict[str, Any]:
    """Train with KTO (the runner has already run :func:`check`)."""
    from align.algos import watched

    return watched.run_trainer(cfg, build_trainer, data, eval_data)
