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
from align.errors import AlignError


@dataclass
class SFTArgs:
    completion_only_loss: bool = arg(
        True, "Compute the loss on completions (assistant turns) only, not on prompts.",
        source="TRL default")
    packing: bool = arg(False, "Pack several short examples into one sequence.",
                        source="TRL default")
    padding_free: bool = arg(
        False, "Concatenate each batch into one sequence, so no compute goes to padding. Fast "
        "with --attn-implementation flash_attention_2; other kernels give the same result more "
        "slowly. --packing already implies it. Examples longer than --max-length are refused "
        "(TRL does not truncate them without --packing).", source="TRL default")


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


def check(cfg: Any, data: Any, report: Any) -> None:
    """SFT's pre-training checks (``AlgoSpec.check``): advice on --padding-free's kernel."""
    attn = cfg.model.attn_implementation or ""
    if cfg.algo.padding_free and not attn.startswith("flash"):
        report.note("note: --padding-free without --attn-implementation flash_attention_2: "
                    "each sequence still attends only to itself (transformers masks the "
                    "flattened batch), but attention is computed over the whole flattened batch, "
                    "which can be slower than padding")


def check_lengths(dataset: Any, max_length: int | None, what: str) -> None:
    """Refuse tokenized examples longer than ``max_length``: TRL 1.16 truncates nothing in a
    padding-free batch without packing, so they would train at their full length."""
    if dataset is None or not max_length:
        return
    lengths = [len(ids) for ids in dataset["input_ids"]]
    long = sum(n > max_length for n in lengths)
    if long:
        raise AlignError(f"--padding-free: {long} {what} examples are longer than --max-length "
                         f"{max_length} tokens (the longest has {max(lengths)}), and TRL does not "
                         "truncate padding-free batches without packing: add --packing (which "
                         "truncates), raise --max-length, or shorten the data")


def build_trainer(cfg: Any, data: Any, eval_data: Any = None,
                  callbacks: Sequence[Any] = ()) -> tuple[Any, Any]:
    """An SFTTrainer for ``cfg`` (see align.algos.common for the adapter pattern)."""
    from trl import SFTConfig, SFTTrainer

    from align.algos import common

    a: SFTArgs = cfg.algo
    tokenizer = common.load_tokenizer(cfg, data)
    masks = loss_masks(a, data_kind(data.rows), tokenizer)
    extra: dict[str, Any] = {}
    if a.padding_free:
        extra["padding_free"] = True
        if not a.packing:  # TRL refuses a max_length it cannot enforce; check_lengths does
            extra["max_length"] = None
    args = common.trl_config(cfg, SFTConfig, has_eval=eval_data is not None, packing=a.packing,
                             **masks, **extra)
    model = common.load_policy(cfg)
    trainer = SFTTrainer(model=model, args=args,
                         **common.trainer_inputs(cfg, tokenizer, data, eval_data, callbacks))
    if a.padding_free and not a.packing:
        check_lengths(trainer.train_dataset, cfg.data.max_length, "training")
        check_lengths(trainer.eval_dataset, cfg.data.max_length, "evaluation")
    return trainer, tokenizer


def run(cfg: Any, data: Any, eval_data: Any = None) -> dict[str, Any]:
    from align.algos import watched

    return watched.run_trainer(cfg, build_trainer, data, eval_data)
