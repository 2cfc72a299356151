"""The quickstart's agent stage: a task the tiny model can only solve with a tool.

"What is 37 * 52?" A two-layer model with a hidden size of 64 cannot multiply; with the tool
``multiply(a, b)`` it only has to copy the two numbers into a call (Hermes format, the
``chatml-tools`` template) and the result into its answer. The stage builds its own tiny model
(its tokenizer knows the calls' words; the main pipeline's tokenizer is left as it is, so the
main table does not move), then, through the same runner as ``align sft`` / ``align rlhf``:

1. SFT on mixed demonstrations, as real demonstration data is: half the transcripts call the
   tool (prompt, call, result, "The answer is N."), half answer directly ("37 * 52 = 1924.", a
   demonstrator who knows the product). The tiny model cannot multiply, so its direct answers
   are wrong, and the SFT policy calls the tool only part of the time;
2. GRPO from it with the tool (``--tools``) and the gold rule as its reward (``--reward-fn``,
   1 for the exact product in the final answer): its groups hold tool calls (right when the
   numbers are copied) and direct answers (wrong), and it learns *when* to call the tool;
3. evaluation on held-out problems (pairs of numbers never trained on), in align's multi-turn
   loop: exact answers of the SFT policy and of GRPO with the tool, and of the SFT policy
   without it (it answers from its weights: about 0).

The gold measure is the share of exact answers (in [0, 1]).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

# The tool and the reward, written next to the data and named on the command line as a user
# would (align imports user code only when named).
TOOLS_FILE = '''"""The quickstart agent stage's tool and reward (written by align quickstart)."""
import re


def multiply(a: int, b: int) -> int:
    """Multiply two integers.

    Args:
        a: The first factor.
        b: The second factor.
    """
    return int(a) * int(b)


def exact_answer(prompts, completions, answer, **kwargs):
    """1 when the last number of the final assistant turn is the product, else 0."""
    out = []
    for messages, want in zip(completions, answer):
        said = [m.get("content") or "" for m in messages if m.get("role") == "assistant"]
        numbers = re.findall(r"\\d+", said[-1] if said else "")
        out.append(1.0 if numbers and int(numbers[-1]) == int(want) else 0.0)
    return out
'''
# Sizes and settings, chosen on the dev split (``run(..., evaluate_on="dev")``, seeds 0-3; the
# held-out numbers: docs/quickstart.md, "The agent stage"). GRPO can only reinforce what it
# samples: an SFT policy trained on tool transcripts alone calls the tool every time, answers
# the four-digit products right and never samples a three-digit miss right, so its groups hold
# no reward variance (0.84 -> 0.84 on dev; starting from a checkpoint still learning to copy
# gained on some seeds only, -0.05 to +0.05 held-out). With half the demonstrations answering
# directly, the SFT policy samples the tool in 47-72% of its episodes at GRPO's temperature
# (its first step, dev seeds 0-3), every group holds right tool calls and wrong direct answers,
# and GRPO's tool-call rate passes 0.95 within 6-10 steps. Dev (2026-12-07, the 2-core VM,
# two seeds side by side), SFT gold (greedy tool calls) -> GRPO, seeds 0-3, on the quickstart's
# AVX2-pinned math path (align.plan.pin_cpu_math, as `align quickstart` runs): these settings
# 0.66 (0.66) -> 1.00, 0.16 (0.52) -> 0.36, 0.64 (0.95) -> 0.94, 0.20 (0.33) -> 0.69; with 600
# SFT steps 0.45 (0.45) -> 0.98, 0.16 (0.66) -> 0.36, 0.44 (0.97) -> 0.80, 0.17 (1.00) -> 0.22
# (seed 3 had not learnt the copy: args 0.19, copy 0.70, see below). Without the pin, 600 steps:
# 0.64 (0.64) -> 0.98, 0.38 (0.39) -> 0.98, 0.44 (0.45) -> 0.95, 0.78 (0.88) -> 0.94. Whether
# SFT teaches the copy still depends on the seed and on rounding (seed 1: copy 0.30).
SFT_ROWS = 1920  # demonstrations (scaled by --scale)
DIRECT_SHARE = 0.5  # of them answering directly, without the tool
# The direct answers are written "a * b = p.", not "The answer is p.": with the same words
# before the number as after a tool result, the model learnt to compute the answer's digits
# from the factors (wrong) instead of copying the result ("The answer is 937." after the
# tool said 760), and copied later: 960 demonstrations in batches of 16, 600 steps, GRPO
# then reached 0.84, 0.38, 0.00, 0.05 on dev (seeds 0-3). Copying is learnt from the tool
# transcripts alone, suddenly, and needs as many of them per step as before the mix (16): in
# batches of 16 (8 calling the tool) seeds 2 and 3 had not learnt it after 600 steps (0.05,
# 0.02 after GRPO; 900 steps: 0.11, 0.05; a learning rate of 5e-3: 0.00, 0.22); in batches of
# 32, 600 steps (10 epochs of 1920), seed 2: SFT 0.25 -> GRPO 0.72. A second, mixed SFT run
# after 600 steps on tool transcripts alone left the policy calling the tool every time (seed
# 3: 0.73 -> 0.78).
# Issue 24, what makes copying fail on some seeds (dev; "args": calls with both numbers right,
# "copy": final answers repeating the tool's result, both per call, greedy): after 600 steps
# (unpinned) the arguments are right in 0.96-1.00 of the calls on dev seeds 0-3 and the
# answers copy the result in 0.91-0.98; where SFT falls short it is mostly the answer's copy
# (60% direct answers: args 1.00, copy 0.12; pinned seed 1: 1.00, 0.24), failing by its last
# digits ("The answer is 626." after the tool said 624: the first digits copied, the rest
# guessed). Copying is learnt late and suddenly (seed 3's SFT loss: 0.84 at step 150, 0.77 at
# 250, 0.47 at 400, 0.31 at 600), so SFT's step count decides whether it is there, and GRPO
# must not wear it down. Tried:
# - the tokens: every digit is already one token, the same in the question, the call's JSON,
#   the tool turn and the answer (the copy is token identity). Two-digit tokens (factors one
#   token, products two) made the arguments trivial and the answer's copy worse: 600 steps,
#   copy 0.04 (seed 0) and 0.76 (seed 3) against 0.98 and 0.91 with single digits;
# - the tied embeddings and the constant learning rate without warm-up are already the tiny
#   model's (align.tiny.tiny_config, the quickstart's COMMON);
# - fewer SFT steps (the stage's cost is SFT, 47 s of training for 600 steps on a loaded core;
#   issue 29 wants the whole quickstart in 30 s): 180 steps learnt no copying at all (seed 3;
#   with two-digit tokens also at learning rates of 6e-3 and 1e-2 with 10% warm-up and without
#   direct answers; a hidden size of 128 neither), 420 steps copy 0.48 (seed 3); batches of 24
#   for 800 steps 0.14 (seed 3), of 8 for 720 steps args 0.22 (two-digit tokens); 8 attention
#   heads: no better at 600 steps (seed 0); 60% direct answers lost the copy (seed 3: 0.12).
#   More: 720 steps (12 epochs, 20% more time) copied every result on seed 3 unpinned (copy
#   1.00, tool calls 0.17) and lifted pinned seed 3 from +0.05 to +0.48: the setting kept;
# - GRPO's learning rate: at 5e-4 GRPO wore the copy down (seed 3: 0.91 -> 0.84 from the
#   600-step SFT policy, 1.00 -> 0.84 from the 720-step one), and seed 3 gained +0.05 only
#   (0.78 -> 0.83; seeds 0-2: 0.97, 0.98, 0.97); at 2.5e-4 the copy held (0.94, 0.88) and every
#   dev seed gained +0.16 or more (unpinned, 600 steps; a KL penalty of 0.1 at 5e-4: 0.89 on
#   seed 3).
# One forward per batch (--no-length-groups): the agent table was made so. The length groups
# (align.algos.sft) take this SFT 0.75-0.87x its time, but their rounding moves the table (the
# three seeds regenerated with them, 2026-12-08: gains +0.38, +0.09, +0.20 against +0.31,
# +0.20, +0.36), and settings chosen on dev would have to be re-checked first.
SFT = {"learning_rate": 3e-3, "num_train_epochs": 12.0, "per_device_train_batch_size": 32,
       "max_length": 128, "length_groups": False}
TRAIN_ROWS = 96  # GRPO prompts
HELD_OUT = 64  # held-out problems (pairs never trained on), and as many dev problems
# GRPO: sampling at temperature 0.7, 48 steps of 4 problems x 8 samples, no KL penalty (chosen
# for the tool-only start: at temperature 1.0 most samples were wrong and GRPO broke the
# policy; 0.5 and 96 steps no better; a learning rate of 1e-3 unstable), at a learning rate of
# 2.5e-4 (issue 24, above: 5e-4 wore down the copying).
GRPO = {"max_steps": 48, "learning_rate": 2.5e-4, "num_generations": 8,
        "per_device_train_batch_size": 32, "max_completion_length": 64, "beta": 0.0,
        "temperature": 0.7, "max_tool_calls": 2}
CURVE_POINTS = 4


def problems(rng: random.Random, n: int, exclude: set[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    while len(out) < n:
        pair = (rng.randint(10, 99), rng.randint(10, 99))
        if pair not in exclude:
            exclude.add(pair)
            out.append(pair)
    return out


def prompt(a: int, b: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"What is {a} * {b}?"}]


def transcript(a: int, b: int, direct: bool = False) -> list[dict[str, Any]]:
    """A demonstration: the call, its result and the answer; ``direct``, the answer alone (a
    demonstrator who knows the product)."""
    if direct:
        return prompt(a, b) + [{"role": "assistant", "content": f"{a} * {b} = {a * b}."}]
    call = {"type": "function", "function": {"name": "multiply", "arguments": {"a": a, "b": b}}}
    return prompt(a, b) + [{"role": "assistant", "content": "", "tool_calls": [call]},
                           {"role": "tool", "name": "multiply", "content": str(a * b)},
                           {"role": "assistant", "content": f"The answer is {a * b}."}]


def demonstrations(pairs: list[tuple[int, int]], tools: str) -> list[dict[str, Any]]:
    """The SFT rows: the first :data:`DIRECT_SHARE` of ``pairs`` (random pairs) answered
    directly, the rest with the tool; ``tools`` is the schema column (JSON)."""
    n_direct = int(round(DIRECT_SHARE * len(pairs)))
    rows = []
    for i, (a, b) in enumerate(pairs):
        t = transcript(a, b, direct=i < n_direct)
        rows.append({"prompt": t[:1], "completion": t[1:], "tools": tools})
    return rows


def schema() -> dict[str, Any]:
    from transformers.utils import get_json_schema

    scope: dict[str, Any] = {}
    exec(compile(TOOLS_FILE, "agent_tools.py", "exec"), scope)  # noqa: S102 - our own text
    return get_json_schema(scope["multiply"])


def build_model(out: Path, seed: int, pairs: list[tuple[int, int]]) -> Path:
    """A tiny random model whose tokenizer is trained on rendered tool transcripts."""
    from align.templates import apply
    from align.tiny import build_tiny_lm, build_tokenizer

    probe = apply(build_tokenizer(), "chatml-tools")
    tools = [schema()]
    texts = [probe.apply_chat_template(transcript(a, b), tools=tools, tokenize=False)
             for a, b in pairs]
    tokenizer = apply(build_tokenizer(texts, vocab_size=600, span_words=True), "chatml-tools")
    # Llama-shaped: transformers loads a Qwen2 model's tokenizer with Qwen2's own pre-tokenizer,
    # which would split the merged schema back into words (a Llama model's is kept as saved).
    return build_tiny_lm(out, tokenizer, arch="llama", seed=seed, hidden_size=64, layers=2,
                         intermediate_size=256)


def accuracy(model_dir: Path, rows: list[dict[str, Any]], tools_file: Path | None,
             seed: int) -> dict[str, float]:
    """Share of exact answers on ``rows`` (greedy, in align's loop; no tools when
    ``tools_file`` is None), with tool calls per episode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from align.agents.args import AgentArgs
    from align.agents.loop import rollout
    from align.agents.sampler import hf_sampler
    from align.agents.tools import load_toolset
    from align.infer import sampling

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), use_safetensors=True).eval()
    toolset = load_toolset(AgentArgs(tools=f"{tools_file}:multiply", max_tool_calls=2)) \
        if tools_file else None
    sampler = hf_sampler(model, tokenizer, stop_ids=[tokenizer.eos_token_id],
                         options=sampling(0.0, 1.0))
    torch.manual_seed(seed)
    episodes = rollout(rows, [r["prompt"] for r in rows], sampler, tokenizer, toolset,
                       max_completion_length=GRPO["max_completion_length"])
    scope: dict[str, Any] = {}
    exec(compile(TOOLS_FILE, "agent_tools.py", "exec"), scope)  # noqa: S102 - our own text
    hits = scope["exact_answer"](None, [ep.messages[1:] for ep in episodes],
                                 [r["answer"] for r in rows])
    n = max(1, len(rows))
    return {"gold": sum(hits) / n, "tool_calls": sum(ep.tool_calls for ep in episodes) / n,
            "example": (episodes[0].messages[-1].get("content") or "") if episodes else ""}


def split(seed: int) -> dict[str, list[tuple[int, int]]]:
    """The task's problems, disjoint: held-out (reported), dev (for choosing settings), SFT
    transcripts and GRPO prompts (before --scale)."""
    rng = random.Random(seed + 24)
    seen: set[tuple[int, int]] = set()
    held = problems(rng, HELD_OUT, seen)
    sft_pairs = problems(rng, SFT_ROWS, seen)
    grpo_pairs = problems(rng, TRAIN_ROWS, seen)
    dev = problems(random.Random(seed + 25), HELD_OUT, seen)
    return {"held_out": held, "dev": dev, "sft": sft_pairs, "grpo": grpo_pairs}


def run(opts: Any, train: Any, stage: Any, scaled: Any, evaluate_on: str = "held_out"
        ) -> tuple[dict[str, Any], list[dict]]:
    """The stage (see the module docstring); ``train``/``stage``/``scaled`` are the pipeline's
    helpers; ``evaluate_on`` is ``held_out`` (the quickstart) or ``dev`` (for choosing the
    settings). Returns (the summary's ``agent`` entry, the GRPO run's curve)."""
    import time

    from align.data.io import write_jsonl

    pairs = split(opts.seed)
    sft_pairs = pairs["sft"][:scaled(SFT_ROWS, opts, 48)]
    grpo_pairs = pairs["grpo"][:scaled(TRAIN_ROWS, opts, 32)]
    d = opts.out / "agent"
    d.mkdir(parents=True, exist_ok=True)
    tools_file = d / "agent_tools.py"
    tools_file.write_text(TOOLS_FILE, encoding="utf-8")
    sft_data = d / "sft.jsonl"
    write_jsonl(demonstrations(sft_pairs, json.dumps([schema()])), sft_data)
    grpo_data = d / "prompts.jsonl"
    write_jsonl([{"prompt": prompt(a, b), "answer": a * b} for a, b in grpo_pairs], grpo_data)
    eval_rows = [{"prompt": prompt(a, b), "answer": a * b} for a, b in pairs[evaluate_on]]
    with stage("agent sft", opts) as line:
        base = build_model(d / "base", opts.seed, sft_pairs)
        train("sft", str(base), sft_data, d / "sft", opts, save_steps=10_000,
              chat_template="chatml-tools", **SFT)
        line.set_phase("evaluating", "policy")
        start = d / "sft"
        sft_eval = accuracy(start, eval_rows, tools_file, opts.seed)
        no_tool = accuracy(start, eval_rows, None, opts.seed)
    steps = scaled(GRPO["max_steps"], opts, 4)
    with stage("agent grpo", opts) as line:
        began = time.time()
        final = train("grpo", str(start), grpo_data, d / "grpo", opts,
                      **{**GRPO, "tools": f"{tools_file}:multiply",
                         "reward_fn": f"{tools_file}:exact_answer",
                         "save_steps": max(1, steps // CURVE_POINTS)})
        seconds = time.time() - began
        line.set_phase("evaluating", "checkpoints")
        grpo_eval = accuracy(d / "grpo", eval_rows, tools_file, opts.seed)
        curve = [{"progress": 0.0, "gold": sft_eval["gold"]}]
        from align.checkpoints import scan

        for ckpt in scan(d / "grpo")[0]:  # the last one holds the final weights: scored above
            gold = grpo_eval["gold"] if ckpt.step >= steps else \
                accuracy(ckpt.path, eval_rows, tools_file, opts.seed)["gold"]
            curve.append({"progress": min(1.0, ckpt.step / steps), "gold": gold})
    summary = {"sft": sft_eval, "sft_no_tool": no_tool,
               "grpo": {**grpo_eval, "collapsed": bool(final.get("collapsed", False)),
                        "health_events": list(final.get("health_events", [])),
                        "seconds": round(seconds, 1)},
               evaluate_on: len(eval_rows)}
    return summary, curve


def table(agent: dict[str, Any]) -> str:
    """The agent stage's table: exact answers on held-out problems, tool calls per episode."""
    rows = [("grpo + tool", agent["grpo"]), ("sft + tool (start)", agent["sft"]),
            ("sft, no tool", agent["sft_no_tool"])]
    header = ["agent task", "gold", "tool calls", "seconds"]
    body = [[name, f"{r['gold']:.3f}", f"{r['tool_calls']:.2f}",
             f"{r['seconds']:.0f}" if "seconds" in r else ""] for name, r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in body]
    return "\n".join(lines)
