"""Supervised fine-tuning on TRL's SFTTrainer: the stage before preference alignment.

Which tokens carry the loss with --completion-only-loss (the default):
- prompt + completion rows: the completion's (TRL ``completion_only_loss``);
- ``messages`` rows: the assistant turns' (TRL ``assistant_only_loss``). This needs a chat
  template that marks assistant turns with ``{% generation %}``, or one TRL knows how to patch;
  for any other template align warns and trains on the whole conversation;
- ``text`` rows: every token (there is no prompt to leave out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import click

from align.config import arg


@dataclass
class SFTArgs:
    completion_only_loss: bool = arg(
        True, "Compute the loss on completions (assistant turns) only, not on prompts.",
        source="TRL default")
    packing: bool = arg(False, "Pack several short examples into one sequence.",
                        source="TRL default")


def data_kind(rows: list[dict[str, Any]]) -> str:
    """messages, prompt_completion or text: which SFT layout the validated rows use."""
    first = rows[0] if rows else {}
    if "messages" in first:
        return "messages"
    if "prompt" in first and "completion" in first:
        return "prompt_completion"
    return "text"


def assistant_masks_supported(tokenizer: Any) -> bool:
    """True when TRL can mask assistant turns with this tokenizer's chat template: the template
    has ``{% generation %}`` markers, or TRL ships a training version of it."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    template = tokenizer.chat_template
    if not template:
        return False
    if has_generation_markers(template):
        return True
    try:
        get_training_chat_template(tokenizer)
    except ValueError:
        return False
    return True


def loss_masks(a: SFTArgs, kind: str, tokenizer: Any) -> dict[str, bool]:
    """SFTConfig's completion_only_loss / assistant_only_loss for this data layout."""
    if kind == "messages":
        assistant_only = a.completion_only_loss and assistant_masks_supported(tokenizer)
        if a.completion_only_loss and not assistant_only:
            click.echo("warning: the chat template does not mark assistant turns "
                       "({% generation %}) and TRL has no training version of it; the loss "
                       "covers the whole conversation. Pass --no-completion-only-loss to "
                       "silence this.", err=True)
        return {"completion_only_loss": False, "assistant_only_loss": assistant_only}
    return {"completion_only_loss": a.completion_only_loss and kind == "prompt_completion",
            "assistant_only_loss": False}


def build_trainer(cfg: Any, data: Any, eval_data: Any = None,
                  callbacks: Sequence[Any] = ()) -> tuple[Any, Any]:
    """An SFTTrainer for ``cfg`` (see align.algos.common for the adapter pattern)."""
    from trl import SFTConfig, SFTTrainer

    from align.algos import common
    from align.models import lora_config

    a: SFTArgs = cfg.algo
    tokenizer = common.load_tokenizer(cfg, data)
    masks = loss_masks(a, data_kind(data.rows), tokenizer)
    args = common.trl_config(cfg, SFTConfig, has_eval=eval_data is not None, packing=a.packing,
                             **masks)
    model = common.load_policy(cfg)
    trainer = SFTTrainer(model=model, args=args,
                         train_dataset=common.dataset(data, tokenizer, cfg),
                         eval_dataset=common.dataset(eval_data, tokenizer, cfg),
                         processing_class=tokenizer, peft_config=lora_config(cfg.lora),
                         callbacks=list(callbacks))
    return trainer, tokenizer


def run(cfg: Any, data: Any, eval_data: Any = None) -> dict[str, Any]:
    from align.algos import common

    return common.run_trainer(cfg, build_trainer, data, eval_data)
