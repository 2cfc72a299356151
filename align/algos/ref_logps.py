"""DPO's reference log-probs for ``--precompute-ref-logps``, computed by align in one pass.

TRL 1.16's pass (``DPOTrainer._precompute_ref_logps``) runs the reference over the training
batches as the collator builds them: each pair's chosen answer padded to its rejected one's
length, batches of ``per_device_train_batch_size`` pairs, and, on a CPU, its fused log-prob
head scores every position of the batch (prompt and padding too: TRL compacts to the scored
positions only on Triton devices, to keep tile shapes fixed for compilers). align's pass
scores the same sequences, each on its own: all chosen and rejected sequences sorted by
length, :data:`SEQUENCES_PER_BATCH` at a time, under ``torch.inference_mode``, with the head
projecting only the answer positions (:func:`answer_positions_only`). The log-probs are TRL's
(the same forward and head), in TRL's cache file, keyed by ``align.algos.common.ref_cache_key``.

The training step's loss on a CPU (:func:`dpo_trainer`) skips the same kind of work: the head on
the answer positions only, and the policy's forward in two halves, chosen and rejected, each
cut to its own longest row (:class:`PairHalves`), where TRL pads every chosen answer to its
rejected one's length.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import click

# Sequences per forward of the reference pass, measured on the 2-core CPU of docs/benchmarks.md
# (issue 29) with SmolLM2-135M-Instruct: see the table there.
SEQUENCES_PER_BATCH = 8


@contextlib.contextmanager
def answer_positions_only() -> Iterator[None]:
    """While open, TRL's fused log-prob head (``trl.trainer.utils.add_fused_lm_head``) projects
    only the positions whose label is scored, on every device: TRL does so on Triton devices
    and scores every position elsewhere (the others come out 0). The scored positions' values
    are the same; on a CPU the prompt and padding positions are skipped work."""
    from trl.trainer import utils

    kept = utils._use_triton
    utils._use_triton = lambda device: True
    try:
        yield
    finally:
        utils._use_triton = kept


# The model inputs :class:`PairHalves` knows how to split; anything else (a VLM's pixels, a
# padding-free batch, MoE router logits) goes through in one forward, as TRL runs it.
SPLIT_INPUTS = frozenset({"input_ids", "attention_mask", "use_cache"})
# The per-token fields of TRL's ``FusedCausalLMOutput``; ``label_mask`` pads with False.
PER_TOKEN_FIELDS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1",
                    "label_mask")


class PairHalves:
    """Calls ``model`` as TRL's DPO loss does (``model(input_ids=..., attention_mask=...,
    labels=..., fused_lm_head=True)`` on a batch of [chosen rows; rejected rows], right-padded
    to the longest of all), but in two forwards, the chosen half and the rejected half, each
    cut to its own longest row; the per-token outputs are padded back to the batch's width with
    zeros (what TRL's head gives an unscored position) and stacked, so TRL's loss reads them as
    from one forward. A row's log-probs do not depend on the padding to its right (causal
    attention, right padding), so this saves the padded positions' work: a concise chosen
    answer is no longer padded to a rambling rejected one. Anything it cannot split is called
    as it is."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, *args: Any, labels: Any = None, fused_lm_head: bool = False,
                 **kwargs: Any) -> Any:
        import torch

        mask = kwargs.get("attention_mask")
        plain = (args or not fused_lm_head or labels is None or mask is None
                 or not set(kwargs) <= SPLIT_INPUTS or mask.dim() != 2 or mask.size(0) % 2)
        width = mask.size(1) if mask is not None else 0
        if not plain:
            half = mask.size(0) // 2
            # the longest row of each half (right padding: a row's length is its mask's sum)
            cuts = [int(m.sum(dim=1).max()) for m in (mask[:half], mask[half:])]
            plain = min(cuts) >= width or min(cuts) < 2
        if plain:
            return self.model(*args, labels=labels, fused_lm_head=fused_lm_head, **kwargs)
        parts = []
        for rows, cut in ((slice(None, half), cuts[0]), (slice(half, None), cuts[1])):
            part = {k: (v[rows, :cut] if isinstance(v, torch.Tensor) else v)
                    for k, v in kwargs.items()}
            parts.append(self.model(**part, labels=labels[rows, :cut], fused_lm_head=True))
        merged = {}
        for field in PER_TOKEN_FIELDS:
            values = [getattr(out, field, None) for out in parts]
            if any(v is None for v in values):
                merged[field] = None
                continue
            # (rows, cut - 1): prompt-learning PEFT prepends the same positions to both halves
            merged[field] = torch.cat(
                [torch.nn.functional.pad(v, (0, width - cut)) for v, cut in zip(values, cuts)])
        scored = merged["label_mask"]
        merged["loss"] = -merged["log_probs"].sum() / scored.sum().clamp(min=1)
        return type(parts[0])(**merged)


def sequences(dataset: Any, max_length: int | None, truncation_mode: str
              ) -> list[tuple[list[int], list[int]]]:
    """Each row's prompt+chosen then prompt+rejected token ids with their answer mask (1 on
    answer tokens), cut to ``max_length`` as TRL's ``DataCollatorForPreference`` cuts them.
    Returns 2 x rows entries: [chosen_0, rejected_0, chosen_1, ...]."""
    cut = slice(None) if max_length is None else \
        slice(None, max_length) if truncation_mode == "keep_start" else slice(-max_length, None)
    out = []
    for prompt, chosen, rejected in zip(dataset["prompt_ids"], dataset["chosen_ids"],
                                        dataset["rejected_ids"]):
        for answer in (chosen, rejected):
            out.append(((prompt + answer)[cut], ([0] * len(prompt) + [1] * len(answer))[cut]))
    return out


def sequence_logps(model: Any, seqs: list[tuple[list[int], list[int]]], pad_id: int,
                   batch_size: int = SEQUENCES_PER_BATCH) -> list[Any]:
    """Per-token log-probs of each sequence's answer tokens under ``model`` (a 1-D float tensor
    per sequence, in answer order), through TRL's fused head. Sequences run shortest first,
    ``batch_size`` at a time, right-padded to the longest of their batch."""
    import torch

    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]))
    result: list[Any] = [None] * len(seqs)
    device = next(model.parameters()).device
    with torch.inference_mode(), answer_positions_only():
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            width = max(len(seqs[i][0]) for i in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            for row, i in enumerate(batch):
                tokens, answer = seqs[i]
                ids[row, :len(tokens)] = torch.tensor(tokens)
                attention[row, :len(tokens)] = 1
                labels[row, :len(tokens)] = ids[row, :len(tokens)].masked_fill(
                    torch.tensor(answer) == 0, -100)
            out = model(input_ids=ids.to(device), attention_mask=attention.to(device),
                        labels=labels.to(device), use_cache=False, fused_lm_head=True)
            # (B, T-1): position t scores token t+1; prompt-learning PEFT prepends positions
            logps = out.log_probs[:, -(width - 1):].float().cpu()
            scored = labels[:, 1:] != -100
            for row, i in enumerate(batch):
                result[i] = logps[row][scored[row]]
    return result


def pair_logps(chosen: Any, rejected: Any, ld_alpha: float | None) -> tuple[float, float]:
    """A pair's summed answer log-probs; with LD-DPO (``ld_alpha``), tokens beyond the shorter
    answer's length weigh ``ld_alpha`` (TRL's ``compute_ref_log_probs``)."""
    if ld_alpha is None:
        return float(chosen.sum()), float(rejected.sum())
    shared = min(len(chosen), len(rejected))
    return tuple(float(x[:shared].sum() + ld_alpha * x[shared:].sum())  # type: ignore[return-value]
                 for x in (chosen, rejected))


def dpo_trainer(trainer_cls: type) -> type:
    """``trainer_cls`` (TRL's DPOTrainer) with its fused head on the answer positions only in
    every loss (:func:`answer_positions_only`) and align's reference pass; TRL's own pass where
    align's does not apply (DeepSpeed, several processes, a PEFT reference, an iterable
    dataset). ``align.algos.common.content_keyed`` wraps the result (it sets the cache key)."""

    class AlignDPO(trainer_cls):  # type: ignore[misc, valid-type]
        def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            # the policy's forward in two halves on a CPU (PairHalves); the head on the answer
            # positions only in the policy's and the reference's forward
            split = (self.accelerator.device.type == "cpu" and not self.aux_loss_enabled
                     and self.accelerator.num_processes == 1)  # DDP: one forward a backward
            with answer_positions_only():
                return super().compute_loss(PairHalves(model) if split else model, inputs,
                                            return_outputs, num_items_in_batch)

        def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
            from datasets import Dataset, IterableDataset, concatenate_datasets
            from datasets.fingerprint import Hasher

            from accelerate.utils import is_peft_model

            if (self.is_deepspeed_enabled or self.accelerator.num_processes > 1
                    or isinstance(dataset, IterableDataset)
                    or (self.ref_model is None and is_peft_model(self.model))):
                return super()._precompute_ref_logps(dataset, name, batch_size)
            # the caller (content_keyed) has set the fingerprint to the content key
            fingerprint = Hasher.hash((dataset._fingerprint, self._precompute_model_hash))
            cache_file = dataset._get_cache_file_path(fingerprint)
            if not os.path.exists(cache_file):
                self._write_ref_logps(dataset, name, fingerprint, cache_file)
            return concatenate_datasets([dataset, Dataset.from_file(cache_file)], axis=1)

        def _write_ref_logps(self, dataset: Any, name: str, fingerprint: str,
                             cache_file: str) -> None:
            import torch

            collator = self.data_collator
            seqs = sequences(dataset, collator.max_length, collator.truncation_mode)
            click.echo(f"Computing reference log probs for {name} dataset: {dataset.num_rows} "
                       f"pairs, {len(seqs)} sequences by length, {SEQUENCES_PER_BATCH} a batch")
            model = self.ref_model or self.model
            was_training = model.training
            model.eval()
            try:
                with self.accelerator.autocast():
                    logps = sequence_logps(model, seqs, collator.pad_token_id)
            finally:
                model.train(was_training)
            pairs = [pair_logps(logps[2 * i], logps[2 * i + 1], self.ld_alpha)
                     for i in range(dataset.num_rows)]
            chosen = torch.tensor([c for c, _ in pairs])
            rejected = torch.tensor([r for _, r in pairs])

            def add(batch: Any, indices: list[int]) -> dict[str, Any]:
                return {"ref_chosen_logps": chosen[indices], "ref_rejected_logps": rejected[indices]}

            dataset.map(add, with_indices=True, batched=True,
                        remove_columns=dataset.column_names, new_fingerprint=fingerprint,
                        cache_file_name=cache_file,
                        desc=f"Caching reference log probs for {name} dataset")

    AlignDPO.__name__ = AlignDPO.__qualname__ = trainer_cls.__name__
    return AlignDPO
