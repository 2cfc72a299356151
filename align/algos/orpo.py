"""ORPO (Hong et al. 2024) on TRL's experimental ORPOTrainer.

ORPOTrainer lives in ``trl.experimental`` in TRL 1.16; its import stays here. TRL computes
the SFT term over the prompt *and* the chosen answer (the paper writes it over the answer);
orpo_loss in tests/reference_losses.py documents the difference and the tests pin it. Prompts
are cut to --max-prompt-length by align (TRL has no such knob for decoder-only models).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

from align.config import arg, validate_fields


@dataclass
class ORPOArgs:
    beta: float = arg(0.1, "λ: weight of the odds-ratio loss against the SFT loss.",
                      source="TRL default; ms-swift passes λ as --beta", bounds="(0, inf)")

    def __post_init__(self) -> None:
        validate_fields(self)


def build_trainer(cfg: Any, data: Any, eval_data: Any = None,
                  callbacks: Sequence[Any] = ()) -> tuple[Any, Any]:
    """An ORPOTrainer for ``cfg`` (see align.algos.common for the adapter pattern)."""
    # We chose the experimental trainer on purpose; its import warning would only be noise.
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    from align.algos import common

    args = common.trl_config(cfg, ORPOConfig, has_eval=eval_data is not None, beta=cfg.algo.beta)
    tokenizer = common.load_tokenizer(cfg, data)
    # ORPOTrainer runs peft's k-bit preparation itself for a quantized model.
    model = common.load_policy(cfg, prepare_kbit=False)
    trainer = ORPOTrainer(model=model, args=args,
                          **common.trainer_inputs(cfg, tokenizer, data, eval_data, callbacks,
                                                 render=True))
    return trainer, tokenizer


def run(cfg: Any, data: Any, eval_data: Any = None) -> dict[str, Any]:
    from align.algos import watched

    return watched.run_trainer(cfg, build_trainer, data, eval_data)
