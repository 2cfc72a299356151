"""Prompts and PTX text as token ids, and a resumable sampler over them.

Prompts in chat form (a list of messages) go through the tokenizer's chat template with the
generation prompt added; plain-text prompts are tokenized as they are (as TRL does). Long
prompts keep their end (left truncation), which is the part the response continues.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from align.ppo.config import TURN_END_EOS_PENALTY


def prompt_ids(rows: list[dict[str, Any]], tokenizer: Any, max_tokens: int | None
               ) -> list[list[int]]:
    """Token ids of each row's ``prompt``, left-truncated to ``max_tokens``."""
    out = []
    for row in rows:
        prompt = row["prompt"]
        if isinstance(prompt, list):
            text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True,
                                                 tokenize=False)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tokenizer(prompt)["input_ids"]
        if max_tokens:
            ids = ids[-max_tokens:]
        out.append(ids)
    return out


def reward_at_turn_end(flag: bool | None, chat: bool, tokenizer: Any) -> bool:
    """Whether the reward model scores responses closed as a turn (--reward-at-turn-end):
    the flag when given, else on for chat prompts with a chat template. A reward model trained
    on chat pairs saw every answer closed by the template; read at the last token of an answer
    cut mid-sentence, SmolLM2's scored the cut rambling higher than a closed one (docs/ppo.md)."""
    if flag is not None:
        return flag
    return chat and bool(getattr(tokenizer, "chat_template", None))


def missing_eos_penalty(flag: float | None, turn_end: bool) -> float:
    """The score taken from responses cut without EOS (--missing-eos-penalty): the flag when
    given, else TURN_END_EOS_PENALTY when the reward model reads responses closed as a turn
    (a cut answer then looks ended to it) and 0 otherwise (a reward read at the cut sees it)."""
    if flag is not None:
        return flag
    return TURN_END_EOS_PENALTY if turn_end else 0.0


def turn_end_ids(tokenizer: Any, chat: bool) -> list[int]:
    """The tokens that close an answer in the reward model's training data: with chat prompts,
    what the chat template writes after an assistant message's text (ChatML:
    ``<|im_end|>`` and a newline); with plain-text prompts, or a template that writes nothing
    after the text, the EOS token (TRL's RewardTrainer appends it to plain text)."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if not chat or not getattr(tokenizer, "chat_template", None):
        return eos
    mark = "Xq7Zp"  # a text no template writes on its own
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"},
                                          {"role": "assistant", "content": mark}],
                                         tokenize=False)
    tail = text[text.rindex(mark) + len(mark):] if mark in text else ""
    ids = tokenizer(tail, add_special_tokens=False)["input_ids"] if tail else []
    return ids or eos


def ptx_ids(rows: list[dict[str, Any]], tokenizer: Any, max_tokens: int | None
            ) -> list[list[int]]:
    """Token ids of each sft-format row (messages, prompt + completion, or text), truncated."""
    out = []
    for row in rows:
        if "messages" in row:
            text = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        elif "text" in row:
            text = row["text"]
        elif isinstance(row["prompt"], list):
            text = tokenizer.apply_chat_template(row["prompt"] + row["completion"],
                                                 tokenize=False)
        else:
            text = row["prompt"] + row["completion"]
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        out.append(ids[:max_tokens] if max_tokens else ids)
    return out


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Left-pad for generation.  Returns ids (B, P) and mask (B, P), True on real tokens."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = True
    return ids, mask


def right_pad(seqs: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-pad for teacher forcing.  Returns ids (B, L) and mask (B, L)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = True
    return ids, mask


class Sampler:
    """An endless stream of dataset indices, reshuffled each epoch from ``seed + epoch``.

    Batches run across epoch boundaries, so every record is seen once per epoch. The state is
    two integers (epoch, position), which is what exact resume needs.
    """

    def __init__(self, size: int, batch_size: int, seed: int) -> None:
        if size <= 0:
            raise ValueError("the dataset is empty")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.epoch, self.pos = 0, 0

    def _order(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.size, generator=g).tolist()

    def next(self) -> list[int]:
        out: list[int] = []
        while len(out) < self.batch_size:
            order = self._order()
            take = order[self.pos:self.pos + self.batch_size - len(out)]
            out += take
            self.pos += len(take)
            if self.pos >= self.size:
                self.epoch, self.pos = self.epoch + 1, 0
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
