"""A :data:`align.agents.loop.Sampler` on a transformers causal LM: ``model.generate`` on a
left-padded batch of token-id lists, each answer cut after its first stop token."""

from __future__ import annotations

from typing import Any, Sequence

from align.agents.loop import Sampler


def hf_sampler(model: Any, tokenizer: Any, *, stop_ids: Sequence[int],
               options: dict[str, Any]) -> Sampler:
    """A sampler generating with ``model``: ``options`` are generate()'s sampling options
    (:func:`align.infer.sampling`), ``stop_ids`` the tokens that end a turn. Seed torch
    before the rollout for reproducible samples."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    stops = set(stop_ids)

    def sample(seqs: list[list[int]], limits: list[int]) -> list[list[int]]:
        device = next(model.parameters()).device
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        attention = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):  # left padding: every answer starts at column width
            ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            attention[row, width - len(seq):] = 1
        with torch.inference_mode():
            out = model.generate(input_ids=ids.to(device), attention_mask=attention.to(device),
                                 max_new_tokens=max(max(limits), 1), eos_token_id=list(stop_ids),
                                 pad_token_id=pad, **options)
        answers = []
        for row, limit in zip(out[:, width:].tolist(), limits):
            kept: list[int] = []
            for t in row[:limit]:  # up to and including the first stop; the rest is padding
                kept.append(t)
                if t in stops:
                    break
            answers.append(kept)
        return answers

    return sample
