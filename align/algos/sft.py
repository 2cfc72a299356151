"""Supervised fine-tuning on TRL's SFTTrainer: the stage before preference alignment.

Which tokens carry the loss with --completion-only-loss (the default):
- prompt + completion rows: the completion's (TRL ``completion_only_loss``);
- ``messages`` rows: the assistant turns' (TRL ``assistant_only_loss``). This needs a chat
  template that marks assistant turns with ``{% generation %}``, or one TRL knows how to patch;
  for any other template align warns and trains on the whole conversation;
- ``text`` rows: every token (there is no prompt to leave out).
"""

from __future__ import annotations

import functools
import types
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
    length_groups: bool = arg(
        True, "On a CPU (one process), run each batch's forward in up to two length groups, "
        "each cut to its own longest row, instead of one forward over the batch padded to its "
        "longest: the same loss, gradients and metrics up to float rounding, less work on "
        "padding (SmolLM2-135M on mixed-length chats: 0.64x TRL's step). Off: one forward "
        "per batch, as TRL.", source="align default (TRL: one forward per batch)")


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


# TRL's fused log-prob head projects onto the vocabulary in tiles this wide (trl.trainer.utils
# _CHUNKED_LOGPROB_CHUNK_SIZE); up to this width, on a CPU, it builds the whole batch's logits
# anyway, twice (forward, and again in the backward), in torch operations.
FUSED_HEAD_TILE = 32768


def plain_head_applies(model: Any, device_type: str) -> bool:
    """True where the loss from plain logits replaces TRL's fused log-prob head: on a CPU (no
    Triton kernel: TRL scores every position with torch operations) and a vocabulary no wider
    than one of its tiles (so it saves no memory). Measured on the quickstart's model
    (vocabulary 400): SFT's training loop about 0.78x its time with TRL's head
    (docs/benchmarks.md, issue 29)."""
    return device_type == "cpu" and model.config.get_text_config().vocab_size <= FUSED_HEAD_TILE


def use_plain_head(model: Any) -> None:
    """Answer TRL's ``fused_lm_head=True`` calls from the model's own logits.

    Replaces the forward that ``trl.trainer.utils.add_fused_lm_head`` patched in with one that
    returns the same ``FusedCausalLMOutput`` fields SFTTrainer reads (``log_probs``, ``entropy``,
    ``is_top1``, ``label_mask``, ``loss``; zero on ignored positions) from one log-softmax over
    the logits, whose backward is a single fused kernel. Router-logit (MoE) calls keep TRL's
    head. Shapes: logits (B, T, V); labels (B, T); per-token outputs (B, T - 1), or (B, T) with
    pre-shifted ``shift_labels``."""
    import torch
    from trl.trainer.utils import FusedCausalLMOutput

    fused = model.forward  # TRL's patch: kept for the calls this head does not answer
    own = types.MethodType(type(model).forward, model)

    def forward(self: Any, *args: Any, fused_lm_head: bool = False, labels: Any = None,
                shift_labels: Any = None, num_items_in_batch: Any = None, **kwargs: Any) -> Any:
        if not fused_lm_head or kwargs.get("output_router_logits") or getattr(
                self.config.get_text_config(), "output_router_logits", False):
            return fused(*args, fused_lm_head=fused_lm_head, labels=labels,
                         shift_labels=shift_labels, num_items_in_batch=num_items_in_batch,
                         **kwargs)
        kwargs["use_cache"] = False
        logits = own(*args, **kwargs).logits
        if shift_labels is None:
            logits, labels = logits[:, :-1], labels[:, 1:]
        else:
            labels = shift_labels
        labels = labels.to(logits.device)
        mask = labels != -100
        logp = logits.float().log_softmax(-1)  # (B, T', V)
        log_probs = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        log_probs = log_probs.masked_fill(~mask, 0)
        with torch.no_grad():  # metrics only (SFTTrainer logs entropy and token accuracy)
            entropy = -(logp.exp() * logp).sum(-1).masked_fill(~mask, 0)
            is_top1 = (logits.argmax(-1) == labels) & mask  # argmax: the first maximum, as TRL
        count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(loss=-log_probs.sum() / count, log_probs=log_probs,
                                   entropy=entropy, is_top1=is_top1, label_mask=mask)

    # the class's signature, as TRL keeps it: generate() checks its keyword arguments against it
    model.forward = types.MethodType(functools.wraps(type(model).forward)(forward), model)


# The most groups a batch's forward is split into, and what one more group costs in token
# positions: the fixed cost of a forward and backward call over the cost of one more position,
# measured on the quickstart's tiny model (hidden size 64, 2 layers), where it is largest against
# the work a position takes, on the 2-core CPU of docs/benchmarks.md (MKL's strict AVX2 path):
# 86 positions on one thread, 210 on two (`python scripts/ab_sft_cpu.py call-cost`, issue 29).
# The cost is one constant, not one per thread count, so that the groups, and with them the
# float rounding, are the same at any thread count (the quickstart's table depends on it). A
# third group never paid on the quickstart's batches (docs/sft.md).
MAX_GROUPS = 2
GROUP_COST = 256


def length_groups(lengths: Sequence[int], max_groups: int = MAX_GROUPS,
                  group_cost: float = GROUP_COST) -> list[list[int]]:
    """The rows of a right-padded batch in groups, each to be run cut to its longest row, chosen
    to minimise the positions computed, sum over groups of (rows x longest row), plus
    ``group_cost`` a group. The rows sorted by length are cut into at most ``max_groups`` runs
    (the best cut of sorted rows is always into runs), found exactly by dynamic programming.
    Returns the row indices of each group, shortest group first, each in batch order; one group
    of every row when no split pays."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    inf = float("inf")
    # best[k][j]: cost of the first j sorted rows in k groups; cut[k][j]: where the last starts
    best = [[0.0] + [inf] * n] + [[inf] * (n + 1) for _ in range(max_groups)]
    cut = [[0] * (n + 1) for _ in range(max_groups + 1)]
    for k in range(1, max_groups + 1):
        for j in range(1, n + 1):
            for i in range(k - 1, j):
                cost = best[k - 1][i] + (j - i) * lengths[order[j - 1]] + group_cost
                if cost < best[k][j]:
                    best[k][j], cut[k][j] = cost, i
    k = min(range(1, max_groups + 1), key=lambda k: best[k][n]) if n else 1
    groups, j = [], n
    while k:
        i = cut[k][j]
        groups.append(sorted(order[i:j]))
        j, k = i, k - 1
    return groups[::-1]


def row_lengths(kwargs: dict[str, Any], labels: Any) -> list[int] | None:
    """Each row's length when the forward ``model(**kwargs, labels=labels)`` can be split into
    length groups: only input_ids and a 2-D right-padded attention mask, every scored label
    inside its row; None otherwise."""
    import torch

    from align.algos.ref_logps import SPLIT_INPUTS  # anything else goes through whole

    mask, ids = kwargs.get("attention_mask"), kwargs.get("input_ids")
    if (labels is None or mask is None or ids is None or not set(kwargs) <= SPLIT_INPUTS
            or mask.dim() != 2 or ids.shape != mask.shape or labels.shape != mask.shape):
        return None
    lengths = mask.sum(dim=1)
    right_padded = torch.arange(mask.size(1), device=mask.device) < lengths[:, None]
    if not torch.equal(mask.bool(), right_padded) or (labels[~right_padded] != -100).any() \
            or int(lengths.min()) < 2:
        return None
    return lengths.tolist()


def use_length_groups(model: Any) -> None:
    """Run each ``fused_lm_head=True`` call of ``model`` (TRL's fused head or align's plain
    head) in length groups (:func:`length_groups`), each cut to its longest row.

    SFTTrainer pads every batch to its longest row, and a CPU computes every padded position;
    a row's outputs do not depend on the padding to its right (causal attention, right
    padding), so the groups give each row the same per-token outputs. They are padded back
    with zeros (what the head gives an unscored position) to the batch's width and put back in
    the batch's order, so SFTTrainer's loss and metrics read them as from one forward; the
    loss is the same sum over the scored tokens over the same count. Calls it cannot split
    (:func:`row_lengths`) or that no split pays go through as one forward.
    Shapes: per-token outputs (B, T - 1), or (B, T) with pre-shifted ``shift_labels``."""
    from align.algos.ref_logps import forward_in_groups

    head = model.forward

    def forward(self: Any, *args: Any, fused_lm_head: bool = False, labels: Any = None,
                shift_labels: Any = None, num_items_in_batch: Any = None, **kwargs: Any) -> Any:
        target = labels if shift_labels is None else shift_labels
        lengths = None
        if fused_lm_head and not args and not getattr(
                self.config.get_text_config(), "output_router_logits", False):
            lengths = row_lengths(kwargs, target)
        groups = length_groups(lengths) if lengths else []
        if len(groups) < 2:
            return head(*args, fused_lm_head=fused_lm_head, labels=labels,
                        shift_labels=shift_labels, num_items_in_batch=num_items_in_batch,
                        **kwargs)
        return forward_in_groups(head, kwargs, groups,
                                 [max(lengths[i] for i in rows) for rows in groups], target,
                                 "labels" if shift_labels is None else "shift_labels",
                                 num_items_in_batch)

    model.forward = types.MethodType(functools.wraps(type(model).forward)(forward), model)


def length_groups_apply(trainer: Any) -> bool:
    """True where SFT's forwards run in length groups: on a CPU, in one process (DDP wants one
    forward for each backward, as DPO's halves in align.algos.ref_logps), without MoE router
    logits (their auxiliary loss is per forward)."""
    return (trainer.args.device.type == "cpu" and trainer.accelerator.num_processes == 1
            and not trainer.aux_loss_enabled)


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
    head_model = trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") \
        else trainer.model  # where TRL added its head
    if plain_head_applies(head_model, trainer.args.device.type):
        use_plain_head(head_model)
    if a.length_groups and length_groups_apply(trainer):
        use_length_groups(head_model)
    if a.padding_free and not a.packing:
        check_lengths(trainer.train_dataset, cfg.data.max_length, "training")
        check_lengths(trainer.eval_dataset, cfg.data.max_length, "evaluation")
    return trainer, tokenizer


def run(cfg: Any, data: Any, eval_data: Any = None) -> dict[str, Any]:
    from align.algos import watched

    return watched.run_trainer(cfg, build_trainer, data, eval_data)
