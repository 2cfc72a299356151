"""What a multi-turn PPO rollout costs against a single-turn one of the same sampled tokens.

    python scripts/bench_ppo_agent.py --tiny                 # a tiny tool-calling model, CPU
    python scripts/bench_ppo_agent.py --model SFT_DIR --dataset tasks.jsonl \
        --tools tools.py:fn --max-new-tokens 128 --batch 8 --threads 2 --out result.json
    ... --no-cache                                           # every turn prefilled afresh

Multi-turn: ``align.ppo.agent_rollout.sample_episodes`` (generate, run the calls, append the
tool turns, generate again; each group's KV cache kept across turns, or with ``--no-cache``
the whole conversation prefilled every turn), timed whole, loop included, minus the time
spent in the tools; then the scoring pass over the episodes (actor, reference and critic
forward passes, the tool tokens included). Single-turn: the same prompts, one ``generate``
call in which row i samples exactly as many tokens as episode i sampled over all its turns
(its stop token held back until then, and forced there), then the same scoring pass. So both
sides sample the same number of tokens per row; the ratio is of the times, also given per
sampled token. Median of ``--repeats`` runs after one warm-up, the two sides interleaved. A
measurement, not a test: run it on idle cores (``heavy --exclusive`` on a shared machine).
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def tiny_setup(tmp: Path) -> tuple[Path, Path, str]:
    """The tests' tiny model taught to call ``double`` (tests/ppo/conftest.py), its prompts
    and the tool."""
    from align.tiny import build_tiny_lm, build_tokenizer
    from tests.conftest import write_jsonl
    from tests.ppo import conftest as c

    tok = build_tokenizer()
    lm = build_tiny_lm(tmp / "lm", tok, seed=0)
    (tmp / "sft").mkdir()
    model = c.build_tool_sft(tmp / "sft", lm, tok)
    data = write_jsonl(tmp / "tasks.jsonl", c.tool_prompts(64, seed=5))
    return model, data, f"{c.DOUBLE_TOOL}:double"


class ExactLengths:
    """A logits processor: row i samples exactly ``lengths[i]`` tokens, the last one the stop
    token ``stops[0]`` (every stop token held back before, the first forced there)."""

    def __init__(self, lengths: list[int], width: int, stops: list[int]) -> None:
        self.lengths, self.width, self.stops = lengths, width, stops

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        step = input_ids.shape[1] - self.width  # tokens sampled so far
        for row, n in enumerate(self.lengths):
            if step < n - 1:
                scores[row, self.stops] = float("-inf")
            else:
                scores[row] = float("-inf")
                scores[row, self.stops[0]] = 0.0
        return scores


def measure(args: argparse.Namespace, model: Path, data: Path, tools: str) -> dict[str, Any]:
    import torch
    from transformers import LogitsProcessorList

    from align.agents.args import AgentArgs
    from align.agents.tools import load_toolset
    from align.data import load_valid
    from align.options import resolve
    from align.ppo.agent_rollout import sample_episodes
    from align.ppo.data import left_pad
    from align.ppo.models import ACTOR, eos_token_ids, load_roles
    from align.ppo.rollout import Samples, generation_config, response_mask, score
    from align.registry import flag_owners, get_algo

    torch.set_num_threads(args.threads)
    cfg = resolve(get_algo("ppo"), {"model": str(model), "dataset": str(data),
                                    "output_dir": tempfile.mkdtemp(), "tools": tools,
                                    "reward_funcs": "accuracy", "lora": args.lora},
                  {}, flag_owners())
    roles = load_roles(cfg)
    toolset = load_toolset(AgentArgs(tools=tools, max_tool_calls=args.max_tool_calls))
    rows = load_valid(str(data), "prompt").rows[:args.batch]
    labels = [f"record {i + 1}" for i in range(len(rows))]
    tok = roles.tokenizer
    eos = eos_token_ids(roles)
    config = generation_config(temperature=1.0, top_p=1.0, greedy=False, eos_ids=eos,
                               pad_id=tok.pad_token_id)
    out: dict[str, list[float]] = {k: [] for k in (
        "multi_sample_s", "multi_tools_s", "multi_score_s", "single_sample_s", "single_score_s",
        "multi_sampled_tokens", "single_sampled_tokens", "multi_tool_tokens", "turns")}
    for rep in range(args.repeats + 1):
        start = time.perf_counter()
        samples, episodes, t = sample_episodes(
            roles, toolset, rows, labels, max_new_tokens=args.max_new_tokens, temperature=1.0,
            top_p=1.0, chunk=args.batch, seed=rep, first_row=0, reuse_cache=not args.no_cache)
        multi_sample = time.perf_counter() - start - t["tools_s"]  # the loop's own work in
        start = time.perf_counter()
        score(roles, samples, temperature=1.0, chunk=args.batch)
        multi_score = time.perf_counter() - start
        lengths = [max(1, ep.sampled_tokens) for ep in episodes]
        # single turn: the same prompts, row i sampling exactly episode i's sampled tokens
        ids, mask = left_pad([ep.prompt_ids for ep in episodes], tok.pad_token_id)
        torch.manual_seed(rep)
        start = time.perf_counter()
        with torch.no_grad(), roles.model.adapter(ACTOR) as actor:
            config.max_new_tokens = max(lengths)
            gen = actor.generate(
                input_ids=ids, attention_mask=mask.long(), generation_config=config,
                logits_processor=LogitsProcessorList(
                    [ExactLengths(lengths, ids.shape[1], eos)]))
        single_sample = time.perf_counter() - start
        response = gen[:, ids.shape[1]:]
        rmask, ended = response_mask(response, eos)
        single = Samples(ids, mask, response, rmask, ended)
        start = time.perf_counter()
        score(roles, single, temperature=1.0, chunk=args.batch)
        single_score = time.perf_counter() - start
        if int(rmask.sum()) != sum(lengths):
            raise RuntimeError(f"single turn sampled {int(rmask.sum())} tokens, the episodes "
                               f"{sum(lengths)}")
        if rep == 0:
            continue  # warm-up
        for k, v in (("multi_sample_s", multi_sample), ("multi_tools_s", t["tools_s"]),
                     ("multi_score_s", multi_score), ("single_sample_s", single_sample),
                     ("single_score_s", single_score),
                     ("multi_sampled_tokens", int(samples.mask.sum())),
                     ("single_sampled_tokens", int(rmask.sum())),
                     ("multi_tool_tokens", int(samples.env_mask.sum())),
                     ("turns", sum(ep.turns for ep in episodes) / len(episodes))):
            out[k].append(float(v))
    med = {k: statistics.median(v) for k, v in out.items()}
    ratios = {  # per repeat, then the median: the two sides of one repeat sample alike
        "sampling_ratio": statistics.median(
            m / s for m, s in zip(out["multi_sample_s"], out["single_sample_s"])),
        "rollout_ratio": statistics.median(
            (m + ms) / (s + ss) for m, ms, s, ss in zip(
                out["multi_sample_s"], out["multi_score_s"], out["single_sample_s"],
                out["single_score_s"])),
    }
    return {"median": med, "ratios": ratios, "runs": out, "batch": len(rows),
            "max_new_tokens": args.max_new_tokens, "max_tool_calls": args.max_tool_calls,
            "kv_cache_across_turns": not args.no_cache, "lora": args.lora,
            "threads": args.threads, "model": str(model), "torch": torch.__version__,
            "machine": f"{platform.processor() or platform.machine()}, "
                       f"{os.cpu_count()} cores",
            "command": " ".join(sys.argv)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="build the tests' tiny tool model")
    p.add_argument("--model")
    p.add_argument("--dataset")
    p.add_argument("--tools")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lora", action="store_true")
    p.add_argument("--max-tool-calls", type=int, default=2)
    p.add_argument("--no-cache", action="store_true",
                   help="prefill the whole conversation every turn (PPO before the KV cache)")
    p.add_argument("--out", help="write the numbers as JSON here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            model, data, tools = tiny_setup(Path(tmp))
        else:
            if not (args.model and args.dataset and args.tools):
                p.error("give --tiny, or --model, --dataset and --tools")
            model, data, tools = Path(args.model), Path(args.dataset), args.tools
        result = measure(args, model, data, tools)
    m, r = result["median"], result["ratios"]
    print(f"multi-turn: {m['multi_sampled_tokens']:.0f} sampled + {m['multi_tool_tokens']:.0f} "
          f"tool tokens, {m['turns']:.2f} turns/episode; sampling {m['multi_sample_s']:.2f} s, "
          f"tools {m['multi_tools_s']:.3f} s (excluded), scoring {m['multi_score_s']:.2f} s")
    print(f"single-turn: {m['single_sampled_tokens']:.0f} sampled tokens; sampling "
          f"{m['single_sample_s']:.2f} s, scoring {m['single_score_s']:.2f} s")
    print(f"multi / single (same sampled tokens per row): sampling {r['sampling_ratio']:.2f}x, "
          f"sampling + scoring {r['rollout_ratio']:.2f}x (target <= 1.3x)")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
