"""Multi-turn PPO rollouts (``--tools`` / ``--environment``) on align's agent loop.

The loop itself (generate, parse the calls, run them in parallel under the timeout, append the
tool turns through the chat template, generate again) is :func:`align.agents.loop.rollout`;
this module gives it the actor as its sampler and turns its episodes into a
:class:`align.ppo.rollout.Samples` whose ``env_mask`` marks the tokens the environment wrote:
the scoring passes read them, the losses, the KL, the entropy and GAE skip them
(align/ppo/losses.py).

Sampling is reproducible and independent of how many processes share the batch: at each turn
the unfinished episodes are generated in groups of ``chunk`` *global* rows (rows 0-7, 8-15,
...), each group from its own random stream seeded from the step's seed, the turn and the
group's first row (:func:`align.ppo.rollout.generate`). Two processes holding rows 0-7 and
8-15 then sample what one process holding all 16 samples with ``chunk`` 8.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Sequence

import torch

from align.ppo.data import left_pad
from align.ppo.models import ACTOR, eos_token_ids
from align.ppo.rollout import Samples, generate, pack_episodes


class EpisodeSampler:
    """An ``align.agents.loop.Sampler`` on the actor that knows which rollout each sequence it
    is handed belongs to.

    The loop hands over the unfinished episodes of a turn in their original order, each one
    its sequence so far; each such sequence extends the one the same episode had at the
    previous turn, which is how they are matched to their rows (in order, so two identical
    episodes keep their own rows)."""

    def __init__(self, model: Any, n: int, *, first_row: int, chunk: int, seed: int | None,
                 pad_id: int, eos_ids: Sequence[int], temperature: float, top_p: float,
                 greedy: bool = False, synced_gpus: bool = False) -> None:
        self.model, self.first_row, self.chunk, self.seed = model, first_row, chunk, seed
        self.pad_id, self.eos_ids = pad_id, list(eos_ids)
        self.options = dict(temperature=temperature, top_p=top_p, greedy=greedy,
                            synced_gpus=synced_gpus)
        self.last: list[list[int] | None] = [None] * n
        self.turn = 0

    def rows_of(self, seqs: list[list[int]]) -> list[int]:
        if self.turn == 0:
            return list(range(len(seqs)))
        rows, j = [], 0
        for seq in seqs:
            while j < len(self.last) and not _extends(seq, self.last[j]):
                j += 1
            if j == len(self.last):
                raise RuntimeError("the agent loop handed over a sequence of no known episode")
            rows.append(j)
            j += 1
        return rows

    def __call__(self, seqs: list[list[int]], limits: list[int]) -> list[list[int]]:
        rows = self.rows_of(seqs)
        out: list[list[int]] = [[] for _ in seqs]
        groups: dict[int, list[int]] = {}
        for k, row in enumerate(rows):
            groups.setdefault((self.first_row + row) // self.chunk, []).append(k)
        seed = None if self.seed is None else self.seed * 1_009 + self.turn
        for group, ks in sorted(groups.items()):
            ids, mask = left_pad([seqs[k] for k in ks], self.pad_id)
            dev = next(self.model.parameters()).device
            new = generate(self.model, ids.to(dev), mask.to(dev),
                           max_new_tokens=max(max(limits[k] for k in ks), 1),
                           eos_ids=self.eos_ids, pad_id=self.pad_id, chunk=len(ks), seed=seed,
                           first_row=group * self.chunk, **self.options)
            for k, row in zip(ks, new.tolist()):
                out[k] = _cut(row, self.eos_ids, limits[k])
        for k, row in enumerate(rows):
            self.last[row] = seqs[k] + out[k]
        self.turn += 1
        return out


def _extends(seq: list[int], prefix: list[int] | None) -> bool:
    return prefix is not None and len(seq) >= len(prefix) and seq[:len(prefix)] == prefix


def _cut(row: list[int], eos_ids: list[int], limit: int) -> list[int]:
    """A generated row up to and including its first stop token, at most ``limit`` tokens."""
    kept: list[int] = []
    for t in row[:limit]:
        kept.append(t)
        if t in eos_ids:
            break
    return kept


@torch.no_grad()
def sample_episodes(roles: Any, toolset: Any, rows: list[dict[str, Any]], labels: list[str], *,
                    max_new_tokens: int, temperature: float, top_p: float, chunk: int,
                    seed: int | None, first_row: int, synced_gpus: bool = False
                    ) -> tuple[Samples, list[Any], dict[str, float]]:
    """Roll out one episode per row with the actor (``--max-new-tokens``: the episode's budget
    after the prompt, sampled and written tokens together, as TRL counts it). Returns the
    samples, the episodes (align.agents.loop.Episode) and the loop's timings (``sample_s``,
    ``tools_s``)."""
    from align.agents.loop import rollout

    dev, tok = roles.device, roles.tokenizer
    eos = eos_token_ids(roles)
    timings: dict[str, float] = {}
    roles.model.eval()
    with roles.model.adapter(ACTOR) as actor:
        sampler = EpisodeSampler(actor, len(rows), first_row=first_row, chunk=chunk, seed=seed,
                                 pad_id=tok.pad_token_id, eos_ids=eos, temperature=temperature,
                                 top_p=top_p, synced_gpus=synced_gpus)
        episodes = rollout(rows, [r["prompt"] for r in rows], sampler, tok, toolset,
                           max_completion_length=max_new_tokens, stop_ids=eos, labels=labels,
                           timings=timings)
    prompt_ids, prompt_mask = left_pad([ep.prompt_ids for ep in episodes], tok.pad_token_id)
    response_ids, mask, env_mask = pack_episodes([ep.completion_ids for ep in episodes],
                                                 [ep.mask for ep in episodes], tok.pad_token_id)
    ended = torch.tensor([not ep.truncated for ep in episodes])
    samples = Samples(prompt_ids.to(dev), prompt_mask.to(dev), response_ids.to(dev),
                      mask.to(dev), ended.to(dev), env_mask.to(dev))
    return samples, episodes, timings


def episode_facts(episodes: list[Any]) -> list[Any]:
    """What :func:`align.agents.loop.episode_metrics` reads of each episode, as plain objects
    (gathered over the processes: an environment instance need not pickle)."""
    keys = ("tool_calls", "tool_errors", "turns", "cut_by_budget", "truncated", "tool_seconds")
    return [SimpleNamespace(**{k: getattr(ep, k) for k in keys}) for ep in episodes]


def episode_completions(episodes: list[Any]) -> list[list[dict[str, Any]]]:
    """Each episode's turns after its prompt (assistant and tool messages), the completion a
    reward function sees, as TRL passes it with tools."""
    return [ep.messages[len(ep.row["prompt"]):] for ep in episodes]
