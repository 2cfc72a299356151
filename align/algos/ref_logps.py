"""DPO's reference log-probs for ``--precompute-ref-logps``, computed by align in one pass.

TRL 1.16's pass (``DPOTrainer._precompute_ref_logps``) runs the reference over the training
batches as the collator builds them: each pair's chosen answer padded to its rejected one's
length, batches of ``per_device_train_batch_size`` pairs, and, on a CPU, its fused log-prob
head scores every position of the batch (prompt and padding too: TRL compacts to the scored
positions only on Triton devices, to keep tile shapes fixed for compilers). align's pass
scores the same sequences, each distinct one once, and runs each distinct prompt once
(:func:`shared_prompt_logps`): the prompt's keys and values are cached and every answer after
it (a pair's chosen and rejected, other pairs on the same prompt) reads them, so the prompt
tokens, 41 % of the issue-29 benchmark's, run once instead of twice; the answers run shortest
first, :data:`TOKENS_PER_BATCH` positions a forward, under ``torch.inference_mode``, through
TRL's log-prob kernel on the answer positions only, log-probs alone (:func:`answer_head`; the
policy's fused head also computes its logging extras). Where that does not apply (PEFT,
sliding-window or linear-attention caches, heads that scale or cap their logits) the sequences
run whole, sorted by length, :data:`SEQUENCES_PER_BATCH` at a time, through TRL's fused head on
the answer positions (:func:`answer_positions_only`). A run that ends inside its first epoch
scores only the rows its batches draw (:func:`rows_reached`). The log-probs are TRL's to float
tolerance, in TRL's cache file, keyed by ``align.algos.common.ref_cache_key``.

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

# Sequences per forward of the whole-sequence reference pass, measured on the 2-core CPU of
# docs/benchmarks.md (issue 29) with SmolLM2-135M-Instruct: see the reference-cache section.
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


# The model inputs :func:`forward_in_groups` knows how to split (DPO's halves, SFT's length
# groups); anything else (a VLM's pixels, a padding-free batch's position_ids, inputs_embeds,
# MoE router logits) goes through in one forward, as TRL runs it.
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
        return forward_in_groups(self.model, kwargs, [list(range(half)),
                                                      list(range(half, mask.size(0)))],
                                 cuts, labels)


def forward_in_groups(call: Any, kwargs: dict[str, Any], groups: list[list[int]],
                      cuts: list[int], target: Any, target_key: str = "labels",
                      num_items_in_batch: Any = None) -> Any:
    """``call(**kwargs, fused_lm_head=True, <target_key>=target)`` on a right-padded batch, run
    as one forward per group of rows (``groups``, row indices), each cut to its width in
    ``cuts``; the per-token outputs (:data:`PER_TOKEN_FIELDS`) are padded back with zeros (what
    TRL's head gives an unscored position) to the batch's width and put back in the batch's row
    order, and the loss is the scored tokens' summed log-probs over their count (or
    ``num_items_in_batch``): TRL's loss and metrics read it as from one forward. Used by
    :class:`PairHalves` (DPO's chosen and rejected halves) and SFT's length groups
    (``align.algos.sft.use_length_groups``)."""
    import torch

    width = kwargs["attention_mask"].size(1)
    parts, order = [], []
    for rows, cut in zip(groups, cuts):
        index = torch.tensor(rows, device=target.device)
        part = {k: (v[index, :cut] if isinstance(v, torch.Tensor) else v)
                for k, v in kwargs.items()}
        parts.append(call(**part, fused_lm_head=True, **{target_key: target[index, :cut]}))
        order += rows
    back = torch.argsort(torch.tensor(order, device=target.device))  # group order -> batch's
    merged = {}
    for field in PER_TOKEN_FIELDS:
        values = [getattr(out, field, None) for out in parts]
        if any(v is None for v in values):
            merged[field] = None
            continue
        # (rows, cut - 1): prompt-learning PEFT prepends the same positions to every group
        merged[field] = torch.cat(
            [torch.nn.functional.pad(v, (0, width - cut)) for v, cut in zip(values, cuts)])[back]
    scored = merged["label_mask"]
    count = scored.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
    merged["loss"] = -merged["log_probs"].sum() / count
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
    per sequence, in answer order), through TRL's fused head. Each distinct sequence is scored
    once, and each distinct prompt is run once (:func:`shared_prompt_logps`) where the model's
    cache allows; otherwise the sequences run whole, shortest first, ``batch_size`` at a time,
    right-padded to the longest of their batch."""
    import torch

    with torch.inference_mode(), answer_positions_only():
        shared = shared_prompt_logps(model, seqs)
        return shared if shared is not None else whole_sequence_logps(model, seqs, pad_id,
                                                                      batch_size)


def whole_sequence_logps(model: Any, seqs: list[tuple[list[int], list[int]]], pad_id: int,
                         batch_size: int) -> list[Any]:
    """:func:`sequence_logps` without the shared prompts: every sequence whole, shortest
    first, ``batch_size`` at a time."""
    import torch

    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]))
    result: list[Any] = [None] * len(seqs)
    device = next(model.parameters()).device
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


# The most prompt tokens whose keys and values the shared-prompt pass holds at once (for
# SmolLM2-135M, 46 kB a token: 0.75 GB); more prompts than that are taken a slice at a time.
PROMPT_TOKENS_HELD = 16384
# Positions (rows x width, padding included) per forward of the shared-prompt pass, measured on
# the 2-core CPU of docs/benchmarks.md with SmolLM2-135M-Instruct (512 and 2,048 no faster).
TOKENS_PER_BATCH = 1024


def split_prompt(tokens: list[int], answer: list[int]
                 ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(prompt, answer) of one sequence: the prompt is the tokens before the first answer
    token, at least one (the first token is never scored: no position predicts it); the answer
    is the rest, every token of it scored (the mask is 0s then 1s, as :func:`sequences` cuts
    it)."""
    k = max(1, answer.index(1) if 1 in answer else len(tokens))
    return tuple(tokens[:k]), tuple(tokens[k:])


def by_tokens(items: list[Any], width: Any, budget: int) -> Iterator[list[Any]]:
    """``items`` (sorted by ``width``, ascending) in consecutive batches of at most ``budget``
    positions (rows x the widest row), at least one item each."""
    batch: list[Any] = []
    for item in items:
        if batch and (len(batch) + 1) * width(item) > budget:
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def shared_prompt_logps(model: Any, seqs: list[tuple[list[int], list[int]]],
                        budget: int = TOKENS_PER_BATCH) -> list[Any] | None:
    """:func:`sequence_logps` with each distinct prompt run once: a pair's chosen and rejected
    answers (and any other pairs on the same prompt) read its keys and values from the cache,
    and identical sequences are scored once. The prompt's last token runs with the answers, so
    that its position scores the first answer token like the rest. Prompts of one length run
    together (no padding); the answers run shortest first, ``budget`` positions a forward,
    their prompts' cached keys and values left-padded to the longest of the batch, positions
    given explicitly. None when this does not apply (a PEFT model, a cache other than plain
    per-layer keys and values, as with sliding windows or linear attention, a head that
    scales or caps its logits): the caller then runs the sequences whole."""
    import torch
    from accelerate.utils import is_peft_model

    head = answer_head(model)
    if is_peft_model(model) or head is None:
        return None
    parts = [split_prompt(*s) for s in seqs]
    distinct = list(dict.fromkeys(parts))  # each (prompt, answer) once, in first-seen order
    prompts = list(dict.fromkeys(p for p, _ in distinct))
    logps: dict[tuple[tuple[int, ...], tuple[int, ...]], Any] = {}
    start = 0
    while start < len(prompts):  # a slice of prompts whose keys and values fit
        end, held = start + 1, len(prompts[start])
        while end < len(prompts) and held + len(prompts[end]) <= PROMPT_TOKENS_HELD:
            held += len(prompts[end])
            end += 1
        cached = prompt_cache(model, prompts[start:end], budget)
        if cached is None:
            return None
        todo = sorted((pa for pa in distinct if pa[0] in cached and pa[1]),
                      key=lambda pa: len(pa[1]))
        for batch in by_tokens(todo, lambda pa: 1 + len(pa[1]), budget):
            logps.update(zip(batch, answer_logps(model, head, batch, cached)))
        start = end
    empty = torch.zeros(0)
    return [logps.get(pa, empty) for pa in parts]


def answer_head(model: Any) -> Any:
    """The answer positions' log-probs from the model's last hidden states, (N, H) and their
    next tokens (N,) -> (N,): TRL's chunked log-prob kernel, the one its fused head calls, asked
    for log-probs only (the policy's fused head also computes the entropy, mean logit and top-1
    of every position for its logs, which a reference pass never reads). None for a model whose
    logits TRL's head scales or caps (Gemma's softcapping, Cohere's logit scale, ...): those
    run through TRL's fused head."""
    from trl.kernels.chunked_logprob import ChunkedLogProbFunction
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

    config = model.config.get_text_config()
    if any(getattr(config, name, None) is not None for name in (
            "final_logit_softcapping", "logit_scale", "output_multiplier",
            "lm_head_multiplier", "logits_scaling")):
        return None
    lm_head = model.get_output_embeddings()

    def head(hidden: Any, targets: Any) -> Any:
        return ChunkedLogProbFunction.apply(hidden, lm_head.weight, lm_head.bias, targets, 1.0,
                                            _CHUNKED_LOGPROB_CHUNK_SIZE, None, 1.0,
                                            ("log_probs",))[0]

    return head


def prompt_cache(model: Any, prompts: list[tuple[int, ...]], budget: int
                 ) -> dict[tuple[int, ...], list[tuple[Any, Any]]] | None:
    """Each prompt's keys and values but its last token's, per layer ((kv heads, length, head
    size) each); prompts of one length run together, ``budget`` positions a forward. None if
    the model's cache has any layer other than transformers' plain ``DynamicLayer``."""
    import torch
    from transformers.cache_utils import DynamicLayer

    device = next(model.parameters()).device
    held: dict[tuple[int, ...], list[tuple[Any, Any]]] = {}
    by_length: dict[int, list[tuple[int, ...]]] = {}
    for p in prompts:
        by_length.setdefault(len(p) - 1, []).append(p)
    for length, group in by_length.items():
        if length == 0:  # a one-token prompt: nothing to cache
            held.update((p, []) for p in group)
            continue
        for batch in by_tokens(group, lambda p: length, budget):
            ids = torch.tensor([p[:-1] for p in batch], device=device)
            out = backbone(model, input_ids=ids, use_cache=True)
            cache = getattr(out, "cache", None) or out.past_key_values
            layers = getattr(cache, "layers", None)
            if not layers or any(type(layer) is not DynamicLayer for layer in layers):
                return None
            for row, p in enumerate(batch):
                held[p] = [(layer.keys[row], layer.values[row]) for layer in layers]
    return held


def backbone(model: Any, cache: Any = None, **kwargs: Any) -> Any:
    """The model's transformer body (no head) on ``kwargs``, reading the keys and values of
    ``cache`` first: transformers renamed ``past_key_values`` to ``cache`` in 5.x."""
    import inspect

    body = model.base_model
    if cache is not None:
        name = "cache" if "cache" in inspect.signature(body.forward).parameters \
            else "past_key_values"
        kwargs[name] = cache
    return body(**kwargs)


def answer_logps(model: Any, head: Any, batch: list[tuple[tuple[int, ...], tuple[int, ...]]],
                 cached: dict[tuple[int, ...], list[tuple[Any, Any]]]) -> list[Any]:
    """The answers' per-token log-probs after their prompts' cached keys and values: the input
    is each prompt's last token and the answer, right-padded; the cache is left-padded to the
    longest cached prompt of the batch (masked out); positions continue each prompt's."""
    import torch
    from transformers.cache_utils import DynamicCache

    device = next(model.parameters()).device
    n = len(batch)
    width = 1 + max(len(a) for _, a in batch)
    past = max(len(p) - 1 for p, _ in batch)
    ids = torch.zeros((n, width), dtype=torch.long)
    attention = torch.zeros((n, past + width), dtype=torch.long)
    positions = torch.zeros((n, width), dtype=torch.long)
    for row, (p, a) in enumerate(batch):
        ids[row, :1 + len(a)] = torch.tensor([p[-1], *a])
        attention[row, past - (len(p) - 1):past + 1 + len(a)] = 1
        positions[row] = torch.arange(len(p) - 1, len(p) - 1 + width)
    cache = None
    if past:
        cache = DynamicCache()
        layers = next(cached[p] for p, _ in batch if cached[p])  # a one-token prompt has none
        for layer, (like, _) in enumerate(layers):
            keys, values = [], []
            for p, _ in batch:
                k, v = cached[p][layer] if cached[p] else (like[:, :0], like[:, :0])
                pad = (0, 0, past - k.size(1), 0)  # (kv heads, length, head size): left
                keys.append(torch.nn.functional.pad(k, pad))
                values.append(torch.nn.functional.pad(v, pad))
            cache.update(torch.stack(keys), torch.stack(values), layer)
    hidden = backbone(model, input_ids=ids.to(device), attention_mask=attention.to(device),
                      position_ids=positions.to(device), cache=cache,
                      use_cache=False).last_hidden_state
    # position t scores answer token t (position 0 is the prompt's last token)
    scored = torch.zeros((n, width), dtype=torch.bool)
    for row, (_, a) in enumerate(batch):
        scored[row, :len(a)] = True
    targets = ids[:, 1:][scored[:, :-1]].to(device)
    logps = head(hidden[scored.to(device)], targets).float().cpu()
    return list(logps.split([len(a) for _, a in batch]))


def pair_logps(chosen: Any, rejected: Any, ld_alpha: float | None) -> tuple[float, float]:
    """A pair's summed answer log-probs; with LD-DPO (``ld_alpha``), tokens beyond the shorter
    answer's length weigh ``ld_alpha`` (TRL's ``compute_ref_log_probs``)."""
    if ld_alpha is None:
        return float(chosen.sum()), float(rejected.sum())
    shared = min(len(chosen), len(rejected))
    return tuple(float(x[:shared].sum() + ld_alpha * x[shared:].sum())  # type: ignore[return-value]
                 for x in (chosen, rejected))


def rows_reached(args: Any, num_rows: int) -> list[int] | None:
    """The training rows a run of ``args.max_steps`` steps draws, when it ends inside its first
    epoch; None when it reaches every row (or the order cannot be told in advance). The order
    is that of transformers' default sampler under accelerate (``SeedableRandomSampler``: epoch
    e is ``torch.randperm`` seeded with --data-seed, else the global seed, plus e; a resume
    skips the epoch's first batches of the same order), so the rows are the first max_steps x
    batch x accumulation of epoch 0's permutation. Only for one process (the caller's rule)."""
    import torch

    draws = args.max_steps * args.per_device_train_batch_size * args.gradient_accumulation_steps
    seedable = getattr(args.accelerator_config, "use_seedable_sampler", False)
    if (args.max_steps <= 0 or draws >= num_rows or not seedable
            or getattr(args, "train_sampling_strategy", "random") != "random"):
        return None
    seed = args.data_seed if args.data_seed is not None else torch.random.initial_seed()
    order = torch.randperm(num_rows, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[:draws])


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
            ref = inputs.get("ref_chosen_logps") if isinstance(inputs, dict) else None
            if ref is not None and bool(ref.isnan().any()):  # a row rows_reached missed
                raise RuntimeError("a training batch holds a row whose reference log-probs were "
                                   "not computed (align.algos.ref_logps.rows_reached); rerun "
                                   "without --precompute-ref-logps and report this")
            with answer_positions_only():
                return super().compute_loss(PairHalves(model) if split else model, inputs,
                                            return_outputs, num_items_in_batch)

        def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
            import math

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
            rows = (rows_reached(self.args, dataset.num_rows) if name == "train" else None) \
                or range(dataset.num_rows)
            known = Dataset.from_file(cache_file) if os.path.exists(cache_file) else None
            scored = known["ref_chosen_logps"] if known is not None else None
            missing = [i for i in rows if scored is None or math.isnan(scored[i])]
            if missing:
                self._write_ref_logps(dataset, name, fingerprint, cache_file, missing, known)
            if dataset._indices is not None:
                # else concatenate_datasets flattens the cache file's rows too, into a copy
                # named by its fingerprint, which a later run that adds rows would read back
                dataset = dataset.flatten_indices()
            return concatenate_datasets([dataset, Dataset.from_file(cache_file)], axis=1)

        def _write_ref_logps(self, dataset: Any, name: str, fingerprint: str, cache_file: str,
                             rows: list[int], known: Any) -> None:
            """Score ``rows`` and write the cache file: the values of ``known`` (the cache
            file as it was, or None) for the other rows, NaN for rows never scored."""
            import torch

            collator = self.data_collator
            seqs = sequences(dataset.select(rows), collator.max_length, collator.truncation_mode)
            of = f" of {dataset.num_rows}" if len(rows) < dataset.num_rows else ""
            click.echo(f"Computing reference log probs for {name} dataset: {len(rows)}{of} "
                       f"pairs, {len(seqs)} sequences, each prompt once where the model allows")
            model = self.ref_model or self.model
            was_training = model.training
            model.eval()
            try:
                with self.accelerator.autocast():
                    logps = sequence_logps(model, seqs, collator.pad_token_id)
            finally:
                model.train(was_training)
            nan = torch.full((dataset.num_rows,), float("nan"))
            chosen, rejected = (torch.tensor(known[column]) if known is not None else nan.clone()
                                for column in ("ref_chosen_logps", "ref_rejected_logps"))
            for k, i in enumerate(rows):
                chosen[i], rejected[i] = pair_logps(logps[2 * k], logps[2 * k + 1], self.ld_alpha)

            def add(batch: Any, indices: list[int]) -> dict[str, Any]:
                return {"ref_chosen_logps": chosen[indices], "ref_rejected_logps": rejected[indices]}

            dataset.map(add, with_indices=True, batched=True,
                        remove_columns=dataset.column_names, new_fingerprint=fingerprint,
                        cache_file_name=cache_file, load_from_cache_file=False,
                        desc=f"Caching reference log probs for {name} dataset")

    AlignDPO.__name__ = AlignDPO.__qualname__ = trainer_cls.__name__
    return AlignDPO
