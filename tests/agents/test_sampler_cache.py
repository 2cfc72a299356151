"""The sampler's KV cache across turns: with greedy decoding, continuing the cache gives the
same tokens (and so the same rollouts, ids and masks) as a fresh prefill of the whole
conversation every turn, on ragged batches."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from align.agents.args import AgentArgs
from align.agents.loop import rollout
from align.agents.sampler import hf_sampler
from align.agents.tools import load_toolset
from align.infer import load, sampling, stop_ids

TOOLS = Path(__file__).with_name("trl_style_tools.py")
GREEDY = sampling(0.0, 1.0)


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def loaded(request, tiny_lm, tiny_llama):
    return load(str(tiny_lm if request.param == "qwen2" else tiny_llama), device="cpu",
                chat_template="chatml-tools")


def samplers(loaded):
    stops = stop_ids(loaded)
    return [hf_sampler(loaded.model, loaded.tokenizer, stop_ids=stops, options=GREEDY,
                       reuse_cache=reuse) for reuse in (True, False)]


def test_continuing_the_cache_gives_the_tokens_of_a_fresh_prefill(loaded):
    """Direct calls: rows dropped and reordered, tails of different lengths, the sampled turn
    kept or replaced by other tokens, answers cut at different limits."""
    cached, fresh = samplers(loaded)
    rng = random.Random(0)
    vocab = loaded.tokenizer.vocab_size
    seqs = [[rng.randrange(3, vocab) for _ in range(n)] for n in (5, 17, 9, 12)]
    limits = [6, 3, 8, 5]
    for turn in range(4):
        a, b = cached(seqs, limits), fresh(seqs, limits)
        assert a == b, turn
        nxt = []
        for k, (seq, ans) in enumerate(zip(seqs, a)):
            if turn == 1 and k == 2:
                continue  # this row has finished
            if turn == 2 and k == 0:
                ans = [rng.randrange(3, vocab) for _ in range(4)]  # the caller replaced it
            nxt.append(seq + ans + [rng.randrange(3, vocab) for _ in range(1 + 3 * k + turn)])
        seqs = nxt[::-1] if turn == 1 else nxt
        limits = [4 + (k % 3) for k in range(len(seqs))]
    assert cached.stats["cached_calls"] == 3 and cached.stats["reused"] > 0
    assert cached.stats["prefilled"] < fresh.stats["prefilled"] / 2
    assert fresh.stats["cached_calls"] == 0


def call(a, b):
    return f'<tool_call>\n{{"name": "multiply", "arguments": {json.dumps({"a": a, "b": b})}}}' \
           "\n</tool_call>"


def scripted(loaded, sample, calls):
    """Row k (its prompt names it) answers with the model's own first tokens followed by a
    call while it has calls left in ``calls[k]``, then with the model's own answer: rows
    finish at different turns, tool results differ in length."""
    tok = loaded.tokenizer
    stops = set(stop_ids(loaded))

    def run(seqs, limits):
        own = sample(seqs, [min(3, n) for n in limits])
        out = []
        for seq, ids in zip(seqs, own):
            text = tok.decode(seq)
            k = int(text.split("row ")[1].split()[0])
            turn = text.count("<|im_start|>assistant") - 1
            ids = [t for t in ids if t not in stops]
            if turn < len(calls[k]):
                ids = ids + tok.encode(call(*calls[k][turn]), add_special_tokens=False) + \
                    [tok.eos_token_id]
            out.append(ids)
        return out
    run.reset = sample.reset  # rollout() resets the wrapped sampler
    return run


def test_rollouts_with_the_cache_match_rollouts_without(loaded):
    ts = load_toolset(AgentArgs(tools=f"{TOOLS}:multiply", max_tool_calls=5))
    calls = [[(6, 7)], [(123, 4567), (2, 3), (99999, 99999)], [], [(1, 1), (31415, 92653)]]
    prompts = [[{"role": "user", "content": f"Compute, row {k} please."}] for k in range(4)]
    rows = [{} for _ in prompts]
    cached, fresh = samplers(loaded)
    runs = [rollout(rows, prompts, scripted(loaded, s, calls), loaded.tokenizer, ts,
                    max_completion_length=400, stop_ids=stop_ids(loaded))
            for s in (cached, fresh)]
    for a, b in zip(*runs):
        assert a.prompt_ids == b.prompt_ids
        assert a.completion_ids == b.completion_ids and a.mask == b.mask
        assert a.messages == b.messages
    assert [e.tool_calls for e in runs[0]] == [len(c) for c in calls]
    assert cached.stats["cached_calls"] == 3  # turns 2-4 continued the cache
    assert cached.stats["prefilled"] < fresh.stats["prefilled"] / 2


def test_rollout_starts_and_ends_without_the_samplers_cache(loaded):
    """No KV outlives a rollout: the next rollout (maybe after a training step changed the
    weights) prefills its prompts afresh, and the cache's memory is freed in between."""
    ts = load_toolset(AgentArgs(tools=f"{TOOLS}:multiply", max_tool_calls=5))
    prompts = [[{"role": "user", "content": f"Compute, row {k} please."}] for k in range(2)]
    cached, _ = samplers(loaded)
    run = scripted(loaded, cached, [[(2, 3)], []])
    for n in (1, 2):
        rollout([{}, {}], prompts, run, loaded.tokenizer, ts, max_completion_length=300,
                stop_ids=stop_ids(loaded))
        assert cached._cache is None and cached.stats["fresh_calls"] == n
    assert cached.stats["cached_calls"] == 2
