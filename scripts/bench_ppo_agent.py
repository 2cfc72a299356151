"""What a multi-turn PPO rollout costs against a single-turn one of the same sampled tokens.

    python scripts/bench_ppo_agent.py --tiny                 # a tiny tool-calling model, CPU
    python scripts/bench_ppo_agent.py --model SFT_DIR --dataset tasks.jsonl \
        --tools tools.py:fn --max-new-tokens 128 --batch 16

Multi-turn: ``align.ppo.agent_rollout.sample_episodes`` (generate, run the calls, append the
tool turns, generate again) and the scoring pass over the episodes (actor, reference and
critic forward passes, the tool tokens included). Single-turn: the same prompts, one
``generate`` call forced to sample the episodes' mean number of sampled tokens per row (EOS
held back), and the same scoring pass. Time in the tools is excluded (the loop times it
apart); the sampling and the scoring are compared per sampled token. Median of ``--repeats``
runs after one warm-up. A measurement, not a test: run it on idle cores
(``heavy --exclusive`` on a shared machine).
"""

from __future__ import annotations

import argparse
import json
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


def measure(args: argparse.Namespace, model: Path, data: Path, tools: str) -> dict[str, Any]:
    import torch

    from align.agents.args import AgentArgs
    from align.agents.tools import load_toolset
    from align.data import load_valid
    from align.options import resolve
    from align.ppo.agent_rollout import sample_episodes
    from align.ppo.data import left_pad
    from align.ppo.models import ACTOR, load_roles
    from align.ppo.rollout import Samples, response_mask, score
    from align.registry import flag_owners, get_algo

    torch.set_num_threads(args.threads)
    cfg = resolve(get_algo("ppo"), {"model": str(model), "dataset": str(data),
                                    "output_dir": tempfile.mkdtemp(), "tools": tools,
                                    "reward_funcs": "accuracy", "lora": args.lora},
                  {}, flag_owners())
    roles = load_roles(cfg)
    toolset = load_toolset(AgentArgs(tools=tools))
    rows = load_valid(str(data), "prompt").rows[:args.batch]
    labels = [f"record {i + 1}" for i in range(len(rows))]
    tok = roles.tokenizer
    out: dict[str, list[float]] = {k: [] for k in (
        "multi_sample_s", "multi_tools_s", "multi_score_s", "single_sample_s", "single_score_s",
        "multi_sampled_tokens", "single_sampled_tokens", "multi_tool_tokens", "turns")}
    for rep in range(args.repeats + 1):
        samples, episodes, t = sample_episodes(
            roles, toolset, rows, labels, max_new_tokens=args.max_new_tokens, temperature=1.0,
            top_p=1.0, chunk=args.batch, seed=rep, first_row=0)
        start = time.perf_counter()
        score(roles, samples, temperature=1.0, chunk=args.batch)
        multi_score = time.perf_counter() - start
        sampled = int(samples.mask.sum())
        per_row = max(1, round(sampled / len(rows)))
        # single turn: the same prompts, one generate call of `per_row` tokens each
        ids, mask = left_pad([ep.prompt_ids for ep in episodes], tok.pad_token_id)
        torch.manual_seed(rep)
        start = time.perf_counter()
        with torch.no_grad(), roles.model.adapter(ACTOR) as actor:
            gen = actor.generate(input_ids=ids, attention_mask=mask.long(), do_sample=True,
                                 top_k=0, max_new_tokens=per_row, min_new_tokens=per_row,
                                 pad_token_id=tok.pad_token_id)
        single_sample = time.perf_counter() - start
        response = gen[:, ids.shape[1]:]
        rmask, ended = response_mask(response, [-1])
        single = Samples(ids, mask, response, rmask, ended)
        start = time.perf_counter()
        score(roles, single, temperature=1.0, chunk=args.batch)
        single_score = time.perf_counter() - start
        if rep == 0:
            continue  # warm-up
        for k, v in (("multi_sample_s", t["sample_s"]), ("multi_tools_s", t["tools_s"]),
                     ("multi_score_s", multi_score), ("single_sample_s", single_sample),
                     ("single_score_s", single_score), ("multi_sampled_tokens", sampled),
                     ("single_sampled_tokens", int(rmask.sum())),
                     ("multi_tool_tokens", int(samples.env_mask.sum())),
                     ("turns", sum(ep.turns for ep in episodes) / len(episodes))):
            out[k].append(float(v))
    med = {k: statistics.median(v) for k, v in out.items()}
    per_tok = {
        "multi_sample_s_per_token": med["multi_sample_s"] / med["multi_sampled_tokens"],
        "single_sample_s_per_token": med["single_sample_s"] / med["single_sampled_tokens"],
        "multi_rollout_s_per_token": (med["multi_sample_s"] + med["multi_score_s"])
        / med["multi_sampled_tokens"],
        "single_rollout_s_per_token": (med["single_sample_s"] + med["single_score_s"])
        / med["single_sampled_tokens"],
    }
    ratios = {
        "sampling_ratio": per_tok["multi_sample_s_per_token"]
        / per_tok["single_sample_s_per_token"],
        "rollout_ratio": per_tok["multi_rollout_s_per_token"]
        / per_tok["single_rollout_s_per_token"],
    }
    return {"median": med, "per_token": per_tok, "ratios": ratios, "runs": out,
            "batch": len(rows), "max_new_tokens": args.max_new_tokens, "lora": args.lora,
            "threads": args.threads, "command": " ".join(sys.argv)}


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
    print(f"per sampled token, multi / single: sampling {r['sampling_ratio']:.2f}x, "
          f"sampling + scoring {r['rollout_ratio']:.2f}x (target <= 1.3x)")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
