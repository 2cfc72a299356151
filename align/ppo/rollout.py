"""Rollout: sample responses, then score them with every role, in chunks, without gradients.

Layout of one rollout batch: prompts left-padded to P tokens (so generation continues every
prompt at the same column), responses right-padded to T tokens, cut after the first EOS. The
full sequence is ``cat(prompt_ids, response_ids)`` (B, P+T); position ids count real tokens
only, so left padding does not shift positions. Logits at column j predict the token at j+1:
the response token t is predicted at column P-1+t, and the critic's value of the state before
token t is read there too.

A rollout is :func:`sample` (generation, the slow part on GPUs: one forward pass per token)
then :func:`score` (one forward pass per role); the trainer times the two apart.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import Tensor

from align.ppo.losses import entropy_from_logits, gather_logprobs
from align.ppo.models import ACTOR, CRITIC, Roles, eos_token_ids, token_scores


@dataclass
class Experience:
    """One rollout batch. B sequences, P prompt tokens (left-padded), T response tokens."""

    prompt_ids: Tensor  # (B, P) prompt tokens, left-padded
    prompt_mask: Tensor  # (B, P) True on prompt tokens, False on padding
    response_ids: Tensor  # (B, T) sampled tokens; padding after the first EOS
    mask: Tensor  # (B, T) True on response tokens up to and including the first EOS
    ended: Tensor  # (B,) True when the response stopped at EOS (not at the token limit)
    logprobs: Tensor  # (B, T) log π_old(a_t|s_t) of the sampling policy (temperature-scaled)
    ref_logprobs: Tensor  # (B, T) log π_ref(a_t|s_t), same temperature
    values: Tensor  # (B, T) V_old(s_t): the critic's value before token t
    scores: Tensor  # (B,) raw reward of prompt + response (reward model and/or rules)
    entropy: Tensor  # (B, T) entropy of π_old(·|s_t)
    advantages: Tensor | None = None  # (B, T) GAE advantages (whitened / clipped if asked)
    returns: Tensor | None = None  # (B, T) value targets A_t + V_old(s_t)
    # (B, T) multi-turn episodes: True on the tokens the environment wrote between the model's
    # turns (tool results in the chat template's framing), which the model reads but is never
    # trained on; ``mask`` is then True on the tokens the model sampled only. None: one turn
    env_mask: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.response_ids.shape[0]

    def select(self, idx: Tensor) -> "Experience":
        """The rows ``idx`` of every field (a mini- or micro-batch)."""
        return replace(self, **{f.name: getattr(self, f.name)[idx] for f in fields(self)
                                if getattr(self, f.name) is not None})

    @property
    def attention(self) -> Tensor:
        """(B, T) True on every response token the model reads: sampled or written by the
        environment."""
        return attention_mask(self.mask, self.env_mask)

    def sequences(self) -> tuple[Tensor, Tensor, Tensor]:
        """input_ids, attention_mask, position_ids of prompt + response, each (B, P+T)."""
        return sequence_inputs(self.prompt_ids, self.prompt_mask, self.response_ids,
                               self.attention)


def attention_mask(mask: Tensor, env_mask: Tensor | None) -> Tensor:
    """The response tokens a forward pass attends to: the sampled ones and the environment's."""
    return mask if env_mask is None else mask | env_mask


def sequence_inputs(prompt_ids: Tensor, prompt_mask: Tensor, response_ids: Tensor,
                    mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Concatenate prompt and response; positions count real tokens from 0."""
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, mask], dim=1).long()
    position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)
    return input_ids, attention_mask, position_ids


def response_mask(response_ids: Tensor, eos_ids: list[int]) -> tuple[Tensor, Tensor]:
    """Mask up to and including the first EOS, and whether an EOS came at all.

    Shapes: response_ids (B, T). Returns mask (B, T) bool, ended (B,) bool.
    """
    is_eos = torch.isin(response_ids, torch.tensor(eos_ids, device=response_ids.device))
    ended = is_eos.any(1)
    T = response_ids.shape[1]
    first = torch.where(ended, is_eos.float().argmax(1), torch.full_like(ended, T - 1,
                                                                         dtype=torch.long))
    mask = torch.arange(T, device=response_ids.device)[None, :] <= first[:, None]
    return mask, ended


def policy_logits(model: Any, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor,
                  T: int, temperature: float) -> Tensor:
    """Temperature-scaled logits that predict the last T tokens.  Returns (B, T, V)."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                use_cache=False, logits_to_keep=T + 1)
    return out.logits[:, :-1] / temperature


def _chunks(B: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, B)) for i in range(0, B, size)]


@torch.no_grad()
def generate(model: Any, prompt_ids: Tensor, prompt_mask: Tensor, *, max_new_tokens: int,
             temperature: float, top_p: float, eos_ids: list[int], pad_id: int, chunk: int,
             sort_by_length: bool = False, static_cache: bool = False,
             cache_len: int | None = None, greedy: bool = False,
             seed: int | None = None, first_row: int = 0, synced_gpus: bool = False) -> Tensor:
    """Sample responses, ``chunk`` prompts per ``generate`` call.  Returns response_ids (B, T),
    right-padded with pad_id, in the order of the prompts.

    Each call is cut to its own longest prompt (the columns left of it are padding only), and
    with ``sort_by_length`` the prompts go to the calls longest first, so that prompts of
    similar length share a call and little padding is computed. Neither changes what is
    sampled for a prompt: its tokens, positions and attention are the same in any call (with
    ``greedy`` the responses are identical, as a test checks; when sampling, the random draws
    are spread over the prompts in another order). ``static_cache`` preallocates the KV cache
    (``cache_len`` positions, default P + max_new_tokens) so that, on CUDA, transformers
    compiles the decoding step with torch.compile and replays it as a CUDA graph; one fixed
    ``cache_len`` across calls lets every call reuse the compiled step.

    With ``seed``, each call samples from its own random stream, seeded from ``seed`` and the
    global index of the call's first prompt (``first_row`` + its offset here), inside a forked
    RNG: what a prompt gets then depends on the calls, not on how many processes share the
    batch (with one call per process's share, two processes sample what one process sampling
    both shares would), and the global RNG stream is untouched.

    ``synced_gpus`` (ZeRO-3 over several processes, where every forward pass gathers the
    weights' shards from all processes) keeps each process stepping until every process's
    call has finished, so that no process waits for a shard another no longer sends.
    """
    config = generation_config(temperature=temperature, top_p=top_p, greedy=greedy,
                               eos_ids=eos_ids, pad_id=pad_id)
    config.max_new_tokens = max_new_tokens
    B, P = prompt_ids.shape
    if static_cache:
        config.cache_implementation = "static"
        config.max_cache_len = cache_len or P + max_new_tokens
    lengths = prompt_mask.sum(1)
    order = torch.arange(B, device=prompt_ids.device)
    if sort_by_length and B > chunk:  # one call pads to the longest prompt whatever the order
        order = torch.argsort(lengths, descending=True, stable=True)
    parts = []
    cuda = [prompt_ids.device] if prompt_ids.device.type == "cuda" else []
    for s in _chunks(B, chunk):
        rows = order[s]
        width = max(int(lengths[rows].max()), 1)
        with torch.random.fork_rng(devices=cuda, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(call_seed(seed, first_row + s.start))
            out = model.generate(input_ids=prompt_ids[rows, P - width:],
                                 attention_mask=prompt_mask[rows, P - width:].long(),
                                 generation_config=config, synced_gpus=synced_gpus)
        parts.append(out[:, width:])
    T = max(p.shape[1] for p in parts)
    ordered = torch.cat([torch.nn.functional.pad(p, (0, T - p.shape[1]), value=pad_id)
                         for p in parts])
    response_ids = torch.empty_like(ordered)
    response_ids[order] = ordered
    return response_ids


def generation_config(*, temperature: float, top_p: float, greedy: bool, eos_ids: list[int],
                      pad_id: int) -> Any:
    """The ``transformers.GenerationConfig`` every PPO rollout samples with. Our own, so that
    a model's generation_config (top_k, repetition_penalty, ...) cannot make the sampling
    distribution differ from the π whose log-probs PPO optimises."""
    from transformers import GenerationConfig

    return GenerationConfig(do_sample=not greedy, temperature=None if greedy else temperature,
                            top_p=None if greedy else top_p, top_k=None if greedy else 0,
                            eos_token_id=eos_ids, pad_token_id=pad_id)


def call_seed(seed: int, first_row: int) -> int:
    """The seed of a generate call from the step's seed and its first prompt's global row."""
    return (seed * 1_000_003 + first_row) % (2 ** 63)


def close_turns(response_ids: Tensor, mask: Tensor, ended: Tensor, turn_end: list[int],
                pad_id: int) -> tuple[Tensor, Tensor]:
    """Each response's text followed by the tokens that close a turn (``turn_end``): an ended
    response's EOS gives way to them, a response cut at the token limit gets them after its
    last token. This is how the reward model saw every answer in training, so its score is
    read where it learned to give one.

    Shapes: response_ids, mask (B, T); ended (B,). Returns ids and mask (B, T + len(turn_end)),
    right-padded with ``pad_id``.
    """
    B, T = response_ids.shape
    k = len(turn_end)
    text = mask.long().sum(1) - ended.long()  # (B,) tokens before the EOS (all if cut)
    cols = torch.arange(T + k, device=response_ids.device)[None, :]
    ids = torch.nn.functional.pad(response_ids, (0, k), value=pad_id)
    ids = torch.where(cols < text[:, None], ids, torch.full_like(ids, pad_id))
    rows = torch.arange(B, device=ids.device)
    for j, token in enumerate(turn_end):
        ids[rows, text + j] = token
    return ids, cols < (text + k)[:, None]


@torch.no_grad()
def score_responses(reward_model: Any, prompt_ids: Tensor, prompt_mask: Tensor,
                    response_ids: Tensor, mask: Tensor, chunk: int) -> Tensor:
    """Reward-model score of each prompt + response, read at the last response token.

    Shapes: prompt_ids, prompt_mask (B, P); response_ids, mask (B, T). Returns (B,).
    """
    P = prompt_ids.shape[1]
    last = P + mask.long().sum(1) - 1  # (B,) column of the last response token (EOS if ended)
    scores = []
    for s in _chunks(prompt_ids.shape[0], chunk):
        ids, attn, pos = sequence_inputs(prompt_ids[s], prompt_mask[s], response_ids[s], mask[s])
        per_token = token_scores(reward_model, ids, attn, pos)  # (b, P+T)
        scores.append(per_token.gather(1, last[s, None]).squeeze(1))
    return torch.cat(scores)


@torch.no_grad()
def logprobs_and_entropy(model: Any, prompt_ids: Tensor, prompt_mask: Tensor,
                         response_ids: Tensor, mask: Tensor, temperature: float, chunk: int,
                         with_entropy: bool = False) -> tuple[Tensor, Tensor | None]:
    """log π(a_t|s_t) of the response tokens (and the entropy of π(·|s_t)), in chunks.

    Returns logprobs (B, T) and entropy (B, T) or None.
    """
    T = response_ids.shape[1]
    logps, ents = [], []
    for s in _chunks(prompt_ids.shape[0], chunk):
        ids, attn, pos = sequence_inputs(prompt_ids[s], prompt_mask[s], response_ids[s], mask[s])
        logits = policy_logits(model, ids, attn, pos, T, temperature)
        logps.append(gather_logprobs(logits, response_ids[s]))
        if with_entropy:
            ents.append(entropy_from_logits(logits))
    return torch.cat(logps), (torch.cat(ents) if with_entropy else None)


@torch.no_grad()
def critic_values(model: Any, prompt_ids: Tensor, prompt_mask: Tensor, response_ids: Tensor,
                  mask: Tensor, chunk: int) -> Tensor:
    """V(s_t) before each response token t.  Returns (B, T)."""
    P, T = prompt_ids.shape[1], response_ids.shape[1]
    out = []
    for s in _chunks(prompt_ids.shape[0], chunk):
        ids, attn, pos = sequence_inputs(prompt_ids[s], prompt_mask[s], response_ids[s], mask[s])
        out.append(model.values(ids, attn, pos)[:, P - 1:P - 1 + T])
    return torch.cat(out)


@dataclass
class Samples:
    """Sampled responses before scoring: the first half of an Experience."""

    prompt_ids: Tensor  # (B, P) prompt tokens, left-padded
    prompt_mask: Tensor  # (B, P) True on prompt tokens
    response_ids: Tensor  # (B, T) sampled tokens, pad_id after the first EOS
    mask: Tensor  # (B, T) True up to and including the first EOS
    ended: Tensor  # (B,) True when the response stopped at EOS
    env_mask: Tensor | None = None  # (B, T) multi-turn: the environment's tokens (Experience)


def pack_episodes(completions: list[list[int]], sampled: list[list[int]], pad_id: int,
                  device: Any = None) -> tuple[Tensor, Tensor, Tensor]:
    """Multi-turn episodes as one right-padded response each: ``completions[i]`` is everything
    after episode i's prompt (the model's turns and the environment's, in order) and
    ``sampled[i]`` marks each of its tokens 1 when the model sampled it, 0 when the
    environment wrote it (a tool's result in the chat template's framing), as
    ``align.agents.loop.Episode`` holds them.

    Returns response_ids (B, T) padded with ``pad_id``, mask (B, T) True on sampled tokens
    (what PPO trains) and env_mask (B, T) True on the environment's tokens (read, never
    trained); T is the longest episode.
    """
    T = max([len(c) for c in completions] + [1])
    B = len(completions)
    response_ids = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.bool)
    env_mask = torch.zeros((B, T), dtype=torch.bool)
    for i, (ids, flags) in enumerate(zip(completions, sampled)):
        n = len(ids)
        if n:
            response_ids[i, :n] = torch.tensor(ids, dtype=torch.long)
            flag = torch.tensor(flags, dtype=torch.bool)
            mask[i, :n], env_mask[i, :n] = flag, ~flag
    return response_ids.to(device), mask.to(device), env_mask.to(device)


@torch.no_grad()
def sample(roles: Roles, prompt_ids: Tensor, prompt_mask: Tensor, *, max_new_tokens: int,
           temperature: float, top_p: float, chunk: int, **batching: Any) -> Samples:
    """Sample responses from the actor, ``chunk`` prompts per generate call (``batching``:
    the other options of :func:`generate`, which change how the work is batched, not what is
    sampled)."""
    dev = roles.device
    prompt_ids, prompt_mask = prompt_ids.to(dev), prompt_mask.to(dev)
    eos_ids, pad_id = eos_token_ids(roles), roles.tokenizer.pad_token_id
    roles.model.eval()
    with roles.model.adapter(ACTOR) as actor:
        response_ids = generate(actor, prompt_ids, prompt_mask, max_new_tokens=max_new_tokens,
                                temperature=temperature, top_p=top_p, eos_ids=eos_ids,
                                pad_id=pad_id, chunk=chunk, **batching)
    mask, ended = response_mask(response_ids, eos_ids)
    response_ids = torch.where(mask, response_ids, torch.full_like(response_ids, pad_id))
    return Samples(prompt_ids, prompt_mask, response_ids, mask, ended)


@torch.no_grad()
def score(roles: Roles, s: Samples, *, temperature: float, chunk: int,
          turn_end: list[int] | None = None) -> Experience:
    """Everything PPO needs about sampled responses: log-probs of actor and reference, the
    actor's entropy, the critic's values and the reward model's scores, ``chunk`` sequences
    per forward pass. With ``turn_end``, the reward model scores each response closed by
    those tokens (:func:`close_turns`); without, at the response's last token. Without a
    reward model ``scores`` are zeros, for the rule rewards to fill (align/ppo/rewards.py)."""
    model = roles.model
    model.eval()
    # every pass reads the whole episode; only sampled tokens count later (Experience.mask)
    args = (s.prompt_ids, s.prompt_mask, s.response_ids, attention_mask(s.mask, s.env_mask))
    with model.adapter(ACTOR) as actor:
        logprobs, entropy = logprobs_and_entropy(actor, *args, temperature, chunk,
                                                 with_entropy=True)
    with roles.reference() as ref:
        ref_logprobs, _ = logprobs_and_entropy(ref, *args, temperature, chunk)
    with model.adapter(CRITIC):
        values = critic_values(model, *args, chunk)
    rm_args = args
    if turn_end and s.env_mask is None:  # single turn: a multi-turn episode ends its own turn
        rm_args = (s.prompt_ids, s.prompt_mask,
                   *close_turns(s.response_ids, s.mask, s.ended, turn_end,
                                roles.tokenizer.pad_token_id))
    scores = torch.zeros(s.response_ids.shape[0], device=values.device)
    if roles.has_reward_model:
        with roles.reward_model() as rm:
            scores = score_responses(rm, *rm_args, chunk)
    return Experience(prompt_ids=s.prompt_ids, prompt_mask=s.prompt_mask,
                      response_ids=s.response_ids, mask=s.mask, ended=s.ended,
                      logprobs=logprobs, ref_logprobs=ref_logprobs, values=values,
                      scores=scores, entropy=entropy, env_mask=s.env_mask)
