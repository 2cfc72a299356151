"""CPO (Xu et al. 2024) on TRL's experimental CPOTrainer; SimPO reuses it (align.algos.simpo).

CPOTrainer lives in ``trl.experimental`` in TRL 1.16: every import of it stays in this module,
so an API change there breaks `--algo cpo/simpo`, not the CLI. Its tokenizer step has no
prompt-length knob (``max_completion_length`` is for encoder-decoder models only); align cuts
prompts to --max-prompt-length itself (align.data.truncate), and TRL cuts the answer so that
prompt + answer fit in --max-length.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

from align.config import arg, validate_fields

LOSS_TYPES = ("sigmoid", "hinge", "ipo")


@dataclass
class CPOArgs:
    beta: float = arg(0.1, "Scale of the implicit reward β log π.", source="ms-swift RLHF guide",
                      bounds="(0, inf)")
    cpo_alpha: float = arg(1.0, "Weight of the NLL loss on the chosen answer.",
                           source="ms-swift RLHF guide", bounds="[0, inf)")
    loss_type: str = arg("sigmoid", "Preference term: sigmoid (the CPO paper), hinge or ipo.",
                         source="TRL default")
    label_smoothing: float = arg(0.0, "Assumed label-flip rate ε (conservative sigmoid loss).",
                                 source="TRL default", bounds="[0, 0.5)")

    def __post_init__(self) -> None:
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"--loss-type {self.loss_type!r} is not valid for cpo; choose from "
                             f"[{', '.join(LOSS_TYPES)}] (SimPO is --algo simpo)")
        validate_fields(self)
        if self.label_smoothing > 0 and self.loss_type != "sigmoid":
            raise ValueError(f"--label-smoothing is read only by --loss-type sigmoid, "
                             f"not {self.loss_type}")


def build_cpo_trainer(cfg: Any, data: Any, eval_data: Any, callbacks: Sequence[Any],
                      **loss_fields: Any) -> tuple[Any, Any]:
    """A CPOTrainer with the given CPOConfig loss fields (beta, loss_type, cpo_alpha, ...)."""
    # We chose the experimental trainer on purpose; its import warning would only be noise.
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    from align.algos import common

    args = common.trl_config(cfg, CPOConfig, has_eval=eval_data is not None, **loss_fields)
    tokenizer = common.load_tokenizer(cfg, data)
    # CPOTrainer runs peft's k-bit preparation itself for a quantized model.
    model = common.load_policy(cfg, prepare_kbit=False)
    trainer = CPOTrainer(model=model, args=args,
                         **common.trainer_inputs(cfg, tokenizer, data, eval_data, callbacks,
                                                 render=True))
    return trainer, tokenizer


def build_trainer(cfg: Any, data: Any, eval_data: Any = None,
                  callbacks: Sequence[Any] = ()) -> tuple[Any, Any]:
    """A CPOTrainer for ``cfg`` (see align.algos.common for the adapter pattern)."""
    a: CPOArgs = cfg.algo
    return build_cpo_trainer(cfg, data, eval_data, callbacks, beta=a.beta, cpo_alpha=a.cpo_alpha,
                             loss_type=a.loss_type, label_smoothing=a.label_smoothing)


def run(cfg: Any, data: Any, eval_data: Any = None) -> dict[str, Any]:
    from align.algos import watched

    return watched.run_trainer(cfg, build_trainer, data, eval_data)
