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
group's first row (:func:`align.ppo.rollout.call_seed`). Two processes holding rows 0-7 and
8-15 then sample what one process holding all 16 samples with ``chunk`` 8.

Each group keeps its KV cache from one turn to the next (:class:`align.agents.sampler.HFSampler`,
``reuse_cache``): a turn reads only the tool turn and the tokens after the cached prefix,
not the whole conversation again. A group always holds the same global rows (those still
running), so its cache does not depend on the number of processes either.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Sequence

import torch

from align.ppo.data import left_pad
from align.ppo.models import ACTOR, eos_token_ids
from align.ppo.rollout import Samples, call_seed, generation_config, pack_episodes


class EpisodeSampler:
    """An ``align.agents.loop.Sampler`` on the actor that knows which rollout each sequence it
    is handed belongs to, and samples each group of ``chunk`` global rows from its own random
    stream with its own KV cache.

    The loop hands over the unfinished episodes of a turn in their original order, each one
    its sequence so far; each such sequence extends the one the same episode had at the
    previous turn, which is how they are matched to their rows (in order, so two identical
    episodes keep their own rows). ``reuse_cache=False`` prefills every turn afresh (the
    same tokens up to float rounding; a test checks them equal under greedy decoding)."""

    def __init__(self, model: Any, tokenizer: Any, n: int, *, first_row: int, chunk: int,
                 seed: int | None, eos_ids: Sequence[int], temperature: float, top_p: float,
                 greedy: bool = False, synced_gpus: bool = False,
                 reuse_cache: bool = True) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.first_row, self.chunk, self.seed = first_row, chunk, seed
        self.eos_ids, self.reuse_cache = list(eos_ids), reuse_cache
        # our own config, as align.ppo.rollout.generate's: the model's generation_config
        # cannot make the sampling distribution differ from the π PPO optimises
        self.options = {"generation_config": generation_config(
            temperature=temperature, top_p=top_p, greedy=greedy, eos_ids=self.eos_ids,
            pad_id=tokenizer.pad_token_id), "synced_gpus": synced_gpus}
        self.last: list[list[int] | None] = [None] * n
        self.turn = 0
        self.groups: dict[int, Any] = {}  # group -> its HFSampler (its KV cache)

    def reset(self) -> None:
        """Drop every group's KV cache (rollout() calls it before the first turn and after the
        last, so no cache outlives the weights it was computed with)."""
        self.groups = {}

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
        from align.agents.sampler import HFSampler

        rows = self.rows_of(seqs)
        out: list[list[int]] = [[] for _ in seqs]
        groups: dict[int, list[int]] = {}
        for k, row in enumerate(rows):
            groups.setdefault((self.first_row + row) // self.chunk, []).append(k)
        seed = None if self.seed is None else self.seed * 1_009 + self.turn
        dev = next(self.model.parameters()).device
        cuda = [dev] if dev.type == "cuda" else []
        for group, ks in sorted(groups.items()):
            if group not in self.groups:
                self.groups[group] = HFSampler(self.model, self.tokenizer, stop_ids=self.eos_ids,
                                               options=self.options,
                                               reuse_cache=self.reuse_cache)
            with torch.random.fork_rng(devices=cuda, enabled=seed is not None):
                if seed is not None:
                    torch.manual_seed(call_seed(seed, group * self.chunk))
                new = self.groups[group]([seqs[k] for k in ks], [limits[k] for k in ks])
            for k, answer in zip(ks, new):
                out[k] = answer
        for k, row in enumerate(rows):
            self.last[row] = seqs[k] + out[k]
        self.turn += 1
        return out


def _extends(seq: list[int], prefix: list[int] | None) -> bool:
    return prefix is not None and len(seq) >= len(prefix) and seq[:len(prefix)] == prefix


@torch.no_grad()
def sample_episodes(roles: Any, toolset: Any, rows: list[dict[str, Any]], labels: list[str], *,
                    max_new_tokens: int, temperature: float, top_p: float, chunk: int,
                    seed: int | None, first_row: int, synced_gpus: bool = False,
                    greedy: bool = False, reuse_cache: bool = True
                    ) -> tuple[Samples, list[Any], dict[str, float]]:
    """Roll out one episode per row with the actor (``--max-new-tokens``: the episode's budget
    after the prompt, sampled and written tokens together, as TRL counts it). ``greedy``
    decodes greedily (tests); ``reuse_cache=False`` prefills every turn afresh instead of
    continuing each group's KV cache (benchmarks). Returns the samples, the episodes
    (align.agents.loop.Episode) and the loop's timings (``sample_s``, ``tools_s``)."""
    from align.agents.loop import rollout

    dev, tok = roles.device, roles.tokenizer
    eos = eos_token_ids(roles)
    timings: dict[str, float] = {}
    roles.model.eval()
    with roles.model.adapter(ACTOR) as actor:
        sampler = EpisodeSampler(actor, tok, len(rows), first_row=first_row, chunk=chunk,
                                 seed=seed, eos_ids=eos, temperature=temperature, top_p=top_p,
                                 greedy=greedy, synced_gpus=synced_gpus, reuse_cache=reuse_cache)
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
