"""A :data:`align.agents.loop.Sampler` on a transformers causal LM: ``model.generate`` on a
left-padded batch of token-id lists, each answer cut after its first stop token.

The multi-turn loop calls the sampler once per turn with each rollout's whole conversation so
far, which is the previous call's sequence plus the turn sampled and the tool turn written
after it. Re-reading all of it every turn (a fresh prefill) makes a rollout of n turns cost
about n prefills of a growing context, so the sampler keeps the KV cache ``generate`` returns
and, on the next call, feeds only the tokens past what it already holds:

- each new sequence is matched with the cached row sharing its longest common prefix (the
  rows of a batch are matched separately, so rollouts that finished drop out and the
  order may change); the common prefix's keys and values are reused, the cache columns after
  it (a turn's padding after its stop token, or tokens the caller replaced) are masked out;
- the tokens past the prefix (of different lengths per row) are right-aligned after the
  cache's columns, padding between them masked out, so all rows start sampling at one column;
- position ids come from the attention mask (``generate`` numbers the unmasked columns of each
  row 0, 1, 2, ...), so every kept token sits at the position it would have in a fresh
  left-padded prefill and greedy decoding gives the same tokens.

It falls back to a fresh prefill when the model returns no growable cache (static, sliding
window or linear-attention caches, or none), when no row shares a prefix with the cache, or
when more than half the cache's columns would be masked out (re-reading is then cheaper
than carrying the dead columns); ``reuse_cache=False`` always prefills afresh."""

from __future__ import annotations

import copy
from typing import Any, Sequence

from align.agents.loop import Sampler


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class HFSampler:
    """The sampler :func:`hf_sampler` returns. ``stats`` counts the tokens fed to the model:
    ``prefilled`` (read in a prefill, new or after a cache), ``reused`` (taken from the
    cache), ``fresh_calls`` and ``cached_calls``."""

    def __init__(self, model: Any, tokenizer: Any, *, stop_ids: Sequence[int],
                 options: dict[str, Any], reuse_cache: bool = True) -> None:
        self.model, self.options, self.reuse_cache = model, dict(options), reuse_cache
        self.stop_ids = list(stop_ids)
        self.stops = set(stop_ids)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
        self.stats = {"prefilled": 0, "reused": 0, "fresh_calls": 0, "cached_calls": 0}
        self._drop()

    def _drop(self) -> None:
        self._cache: Any = None  # the last call's KV cache: (rows, heads, L, dim) per layer
        self._rows: list[list[tuple[int, int]]] = []  # per row: (column, token) it holds, in order
        self._length = 0  # L, the cache's columns

    def reset(self) -> None:
        """Forget the cache (its memory is freed); the next call prefills afresh."""
        self._drop()

    def __call__(self, seqs: list[list[int]], limits: list[int]) -> list[list[int]]:
        import torch

        plan = self._plan(seqs) if self.reuse_cache and self._cache is not None else None
        if plan is None:
            self._drop()  # free the old cache before the new prefill
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), self.pad, dtype=torch.long)
            attention = torch.zeros((len(seqs), width), dtype=torch.long)
            for row, seq in enumerate(seqs):  # left padding: every answer starts at column width
                ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
                attention[row, width - len(seq):] = 1
            cache = None
            self.stats["fresh_calls"] += 1
            self.stats["prefilled"] += sum(len(s) for s in seqs)
        else:
            ids, attention, cache = plan
            width = ids.shape[1]
        device = next(self.model.parameters()).device
        kwargs: dict[str, Any] = {"cache": cache} if cache is not None else {}
        call = dict(max_new_tokens=max(max(limits), 1), eos_token_id=self.stop_ids,
                    pad_token_id=self.pad, return_dict_in_generate=True, use_cache=True)
        options = dict(self.options)
        if "generation_config" in options:  # a whole config (PPO's): the call's on a copy
            config = copy.deepcopy(options["generation_config"])
            config.update(**call)
            options["generation_config"], call = config, {}
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids.to(device),
                                      attention_mask=attention.to(device),
                                      **call, **kwargs, **options)
        sequences = out.sequences
        answers = []
        for row, limit in zip(sequences[:, width:].tolist(), limits):
            kept: list[int] = []
            for t in row[:limit]:  # up to and including the first stop; the rest is padding
                kept.append(t)
                if t in self.stops:
                    break
            answers.append(kept)
        if self.reuse_cache:
            self._keep(getattr(out, "cache", None), sequences, attention, width, answers)
        return answers

    def _keep(self, cache: Any, sequences: Any, attention: Any, width: int,
              answers: list[list[int]]) -> None:
        """Remember the cache of this call and which (column, token) of each row it holds."""
        from transformers.cache_utils import DynamicCache

        self._drop()
        if not isinstance(cache, DynamicCache) or any(
                getattr(layer, "is_sliding", False) for layer in cache.layers):
            return  # no growable cache to extend: every call prefills afresh
        length = cache.get_seq_length()  # the last sampled token was never fed back
        if length != sequences.shape[1] - 1:
            return
        rows = []
        ids = sequences.tolist()
        for r, answer in enumerate(answers):
            held = [(c, ids[r][c]) for c in range(width) if attention[r, c]]
            # the answer's tokens fed back to the model (up to the cache's end)
            held += [(width + j, t) for j, t in enumerate(answer) if width + j < length]
            rows.append(held)
        self._cache, self._rows, self._length = cache, rows, length

    def _plan(self, seqs: list[list[int]]) -> tuple[Any, Any, Any] | None:
        """(ids, attention mask, cache) continuing the cache for ``seqs``, or None to prefill."""
        import torch

        length = self._length
        pick, keep = [], []
        for seq in seqs:
            best, n = 0, -1
            for r, held in enumerate(self._rows):
                m = _common_prefix([t for _, t in held], seq)
                if m > n:
                    best, n = r, m
            pick.append(best)
            keep.append(min(n, len(seq) - 1))  # feed at least one token
        reused = sum(keep)
        if reused == 0 or reused * 2 < length * len(seqs):
            return None
        tails = [seq[k:] for seq, k in zip(seqs, keep)]
        extra = max(len(t) for t in tails)
        ids = torch.full((len(seqs), length + extra), self.pad, dtype=torch.long)
        attention = torch.zeros((len(seqs), length + extra), dtype=torch.long)
        for row, (r, k, tail) in enumerate(zip(pick, keep, tails)):
            for c, t in self._rows[r][:k]:
                ids[row, c] = t
                attention[row, c] = 1
            ids[row, length + extra - len(tail):] = torch.tensor(tail, dtype=torch.long)
            attention[row, length + extra - len(tail):] = 1
        cache = self._cache
        self._cache = None
        if pick != list(range(len(self._rows))):
            cache.batch_select_indices(torch.tensor(pick, dtype=torch.long,
                                                    device=next(self.model.parameters()).device))
        self.stats["cached_calls"] += 1
        self.stats["reused"] += reused
        self.stats["prefilled"] += sum(len(t) for t in tails)
        return ids, attention, cache


def hf_sampler(model: Any, tokenizer: Any, *, stop_ids: Sequence[int],
               options: dict[str, Any], reuse_cache: bool = True) -> Sampler:
    """A sampler generating with ``model``: ``options`` are generate()'s sampling options
    (:func:`align.infer.sampling`, or a whole ``generation_config`` with the call's
    settings added to a copy of it), ``stop_ids`` the tokens that end a turn. Seed torch
    before the rollout for reproducible samples. With ``reuse_cache`` (the default) each
    call continues the KV cache of the previous one where the new sequences extend it (see
    the module's text); ``False`` prefills every call afresh."""
    return HFSampler(model, tokenizer, stop_ids=stop_ids, options=options,
                     reuse_cache=reuse_cache)
