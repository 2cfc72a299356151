"""What the multi-turn tool loop costs: `align generate --tools`'s rollout against one
single-turn generate of the same number of sampled tokens, tool time excluded.

    python scripts/bench_agents.py                                  # SmolLM2-135M-Instruct
    python scripts/bench_agents.py --model DIR --batch 8 --turns 4 --repeats 3
    python scripts/bench_agents.py --tiny                           # a random tiny model (smoke)

Both sides run the same model through the same ``model.generate`` (align/agents/sampler.py),
on the same batch of prompts, with sampling:

- ``tools``: :func:`align.agents.loop.rollout` with one tool for ``--turns`` turns per rollout.
  Each turn the model generates exactly K tokens (``min_new_tokens``) from the conversation so
  far; the turn's text is then replaced by a fixed tool call of K tokens, so every rollout
  calls the tool ``--turns - 1`` times and the last turn is cut by ``--max-tool-calls``. What
  is measured is therefore the loop itself: a fresh prefill of the growing conversation each
  turn (no KV cache kept across turns), the tool turns' tokens in the context, parsing, the
  threads, the chat template rendering the tool turns. The tool returns at once, and its wall
  time (``timings["tools_s"]``) is subtracted anyway.
- ``single``: one generate of ``--turns`` x K tokens from the same prompts.

Each side is run once to warm up, then ``--repeats`` times; the medians and their ratio are
printed and written as JSON (``--output``). Run it on idle cores (``heavy --exclusive``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

SMOLLM2 = "/root/.cache/align/smollm2-135m-instruct"
TOOL_FILE = '''
def multiply(a: int, b: int) -> int:
    """
    Multiplies two integers.

    Args:
        a: The first integer.
        b: The second integer.
    """
    return a * b
'''
CALL = '<tool_call>\n{"name": "multiply", "arguments": {"a": 6, "b": 7}}\n</tool_call>'


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=SMOLLM2)
    ap.add_argument("--tiny", action="store_true", help="a random tiny model instead")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--output", help="write the result as JSON here")
    args = ap.parse_args(argv)

    import torch

    from align import templates
    from align.agents.args import AgentArgs
    from align.agents.loop import rollout
    from align.agents.sampler import hf_sampler
    from align.agents.tools import load_toolset
    from align.infer import load, sampling, stop_ids

    work = Path(tempfile.mkdtemp(prefix="bench_agents_"))
    model_dir = args.model
    if args.tiny:
        from align.tiny import build_tiny_lm, build_tokenizer

        model_dir = str(build_tiny_lm(work / "tiny", build_tokenizer(), seed=0))
    loaded = load(model_dir, device="cpu", chat_template="chatml-tools")
    tok, model = loaded.tokenizer, loaded.model
    (work / "tools.py").write_text(TOOL_FILE)
    toolset = load_toolset(AgentArgs(tools=f"{work / 'tools.py'}:multiply",
                                     max_tool_calls=args.turns - 1, tool_timeout=30))
    stops = stop_ids(loaded)
    call_ids = tok.encode(CALL, add_special_tokens=False) + [tok.eos_token_id]
    k = len(call_ids)
    options = sampling(1.0, 1.0) | {"min_new_tokens": k}
    generate = hf_sampler(model, tok, stop_ids=stops, options=options)

    def sampler(seqs: list[list[int]], limits: list[int]) -> list[list[int]]:
        generate(seqs, [k] * len(seqs))  # the real cost: k tokens from this conversation
        return [list(call_ids) for _ in seqs]

    prompts = [[{"role": "user", "content": f"What is {6 + i} times {7 + i}? Use the tool."}]
               for i in range(args.batch)]
    rows = [{} for _ in prompts]
    budget = args.turns * k + args.turns * 200  # room for every turn and tool turn

    def run_tools() -> tuple[float, int]:
        timings: dict[str, float] = {}
        start = time.perf_counter()
        eps = rollout(rows, prompts, sampler, tok, toolset, max_completion_length=budget,
                      stop_ids=stops, timings=timings)
        wall = time.perf_counter() - start - timings["tools_s"]
        assert all(e.turns == args.turns and e.tool_calls == args.turns - 1 for e in eps), \
            [(e.turns, e.tool_calls) for e in eps]
        return wall, sum(e.sampled_tokens for e in eps)

    single_gen = hf_sampler(model, tok, stop_ids=stops,
                            options=sampling(1.0, 1.0) | {"min_new_tokens": args.turns * k})
    first_ids = [tok.apply_chat_template(p, tools=toolset.schemas(), tokenize=True,
                                         return_dict=False, add_generation_prompt=True)
                 for p in prompts]

    def run_single() -> tuple[float, int]:
        start = time.perf_counter()
        out = single_gen([list(ids) for ids in first_ids], [args.turns * k] * len(first_ids))
        return time.perf_counter() - start, sum(len(o) for o in out)

    torch.manual_seed(0)
    times: dict[str, list[float]] = {"tools": [], "single": []}
    tokens: dict[str, int] = {}
    for side, fn in (("tools", run_tools), ("single", run_single)):
        fn()  # warm-up
    for _ in range(args.repeats):  # interleaved, so drift in the machine's load hits both
        for side, fn in (("tools", run_tools), ("single", run_single)):
            wall, n = fn()
            times[side].append(wall)
            tokens[side] = n
    med = {side: statistics.median(v) for side, v in times.items()}
    result = {
        "model": "tiny (random)" if args.tiny else model_dir, "batch": args.batch,
        "turns": args.turns, "tokens_per_turn": k, "sampled_tokens": tokens,
        "seconds": times, "median_s": med, "ratio_tools_over_single": med["tools"] / med["single"],
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
    }
    print(json.dumps(result, indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
