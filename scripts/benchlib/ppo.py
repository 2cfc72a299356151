"""PPO: rollout generation against plain ``model.generate``, and one PPO step split into
rollout, scoring and training, in each memory mode.

Everything runs on the roles `align rlhf --algo ppo` loads (``PPORun.create``), so the LoRA
modes share one base between actor and reference, and one between critic and reward model.
Rollout engines generate the same batch of prompts with the same number of new tokens; their
tokens are the generated positions (batch x new columns), counted alike for every engine.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from benchlib.dpo import MODE_FLAGS


def argv(mode: str, env: dict[str, Any]) -> list[str]:
    """The `align rlhf --algo ppo` flags of one mode; generation takes the whole rollout
    batch in one call."""
    out = Path(env["work_dir"]) / "out" / f"ppo-{mode}"
    args = ["--algo", "ppo", "--model", env["actor"], "--reward-model", env["reward_model"],
            "--dataset", env["prompts"], "--output-dir", str(out),
            "--rollout-batch-size", str(env["batch"]), "--max-new-tokens", str(env["new_tokens"]),
            "--rollout-generate-batch-size", str(env["batch"]),
            "--max-steps", str(env["warmup"] + env["steps"]), "--save-steps", "100000",
            "--report-to", "none", *MODE_FLAGS[mode]]
    if env["device"]["kind"] == "cuda":
        args.append("--bf16")
    return args + env["ppo_flags"]


def timed(fn: Callable[..., int], device: str, repeats: int, warmup_tokens: int
          ) -> dict[str, Any]:
    """Run ``fn`` once to warm up (allocator, kernels, compilation) with ``warmup_tokens`` new
    tokens, then ``repeats`` times at full length; ``fn`` returns the tokens it generated."""
    from align.perf import peak_memory_gb, reset_peak_memory, synchronize

    synchronize(device)
    started = time.perf_counter()
    fn(warmup_tokens)
    synchronize(device)
    warmup_s = time.perf_counter() - started
    reset_peak_memory(device)
    tokens, started = 0, time.perf_counter()
    for _ in range(repeats):
        tokens += fn()
    synchronize(device)
    seconds = time.perf_counter() - started
    return {"status": "ok", "warmup_s": warmup_s, "tokens": tokens, "seconds": seconds,
            "tokens_per_s": tokens / seconds, "peak_memory_gb": peak_memory_gb(device)}


def engines(ppo: Any, ids: Any, mask: Any, env: dict[str, Any]
            ) -> dict[str, Callable[..., int]]:
    """The generators to compare, each a function of the number of new tokens (default: the
    benchmark's) returning the positions it generated. A shorter generation keeps the
    compiled engine's static cache at its full length (``generation_options``' cache_len), so
    a short warm-up compiles the very step the timed run replays."""
    from align.ppo.rollout import sample
    from align.ppo.trainer import generation_options

    actor, pad = ppo.roles.actor, ppo.roles.tokenizer.pad_token_id
    B, P = ids.shape

    def plain(new_tokens: int = env["new_tokens"]) -> int:
        out = actor.generate(input_ids=ids, attention_mask=mask.long(), do_sample=True,
                             max_new_tokens=new_tokens, pad_token_id=pad)
        return B * (out.shape[1] - P)

    def align(**extra: Any) -> Callable[..., int]:
        def run(new_tokens: int = env["new_tokens"]) -> int:
            s = sample(ppo.roles, ids, mask, **(generation_options(ppo) | extra
                                                | {"max_new_tokens": new_tokens}))
            return B * s.response_ids.shape[1]
        return run

    return {"plain_generate": plain, "align_hf": align(),
            "align_hf_compiled": align(static_cache=True)}


def run(cell: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    """One mode: load the roles, compare the rollout engines, time PPO steps."""
    import torch

    from align.ppo.state import PPORun
    from align.ppo.trainer import next_prompts
    from align.runner import seed_everything
    from benchlib.device import partial
    from benchlib.plan import prepare

    mode, device = cell["mode"], env["device"]["kind"]
    args = argv(mode, env)
    result: dict[str, Any] = {"mode": mode, "command": "align rlhf " + " ".join(args)}
    cfg, data, issues = prepare(args)
    if issues:
        return result | {"status": "skipped", "reason": "; ".join(issues)}
    seed_everything(cfg.train.seed)
    ppo = PPORun.create(cfg, data, None)
    result["load_memory_gb"] = torch.cuda.memory_allocated() / 1e9 if device == "cuda" else None
    ids, mask = next_prompts(ppo)
    ids, mask = ids.to(ppo.roles.device), mask.to(ppo.roles.device)
    gens = engines(ppo, ids, mask, env)
    parts = env.get("parts", ["rollout", "step"])
    rollout: dict[str, Any] = {}

    def time_engine(name: str) -> dict[str, Any]:
        return _attempt(lambda: timed(gens[name], device, env["repeats"],
                                      env.get("warmup_tokens", env["new_tokens"])))

    if "rollout" in parts:
        for name in ("plain_generate", "align_hf"):
            rollout[name] = time_engine(name)
            partial(env, result | {"rollout": ratios(rollout)})
    if "step" in parts:
        result["step"] = _attempt(lambda: steps(ppo, env))
        partial(env, result | ({"rollout": ratios(rollout)} if rollout else {}))
    # last: a compiled generator keeps its CUDA graphs, which would count in the steps' peak
    if "rollout" in parts:
        rollout["align_hf_compiled"] = (
            time_engine("align_hf_compiled") if device == "cuda" else
            {"status": "skipped", "reason": "--compile-rollout needs CUDA (torch.compile + "
                                            "CUDA graphs)"})
    result |= {"status": "ok"} | ({"rollout": ratios(rollout)} if rollout else {})
    ppo = gens = None  # free the models before the next measurement (in-process runs)
    return result


def ratios(rollout: dict[str, Any]) -> dict[str, Any]:
    """Add each engine's tokens/s relative to plain generate's (``speedup_vs_plain``)."""
    plain = rollout.get("plain_generate", {})
    for r in rollout.values():
        if r.get("status") == "ok" and plain.get("status") == "ok":
            r["speedup_vs_plain"] = r["tokens_per_s"] / plain["tokens_per_s"]
    return rollout


def _attempt(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    from benchlib.device import failure, free_memory

    try:
        return fn()
    except Exception as e:  # noqa: BLE001 -- recorded (OOM or error), the others still run
        free_memory()
        return failure(e)


def steps(ppo: Any, env: dict[str, Any]) -> dict[str, Any]:
    """``warmup + steps`` PPO steps through the trainer's own ``ppo_step``; the mean of each
    perf/* timing over the timed steps and the largest per-step peak memory."""
    from align.ppo.trainer import ppo_step

    rows = []
    for i in range(env["warmup"] + env["steps"]):
        ppo.step += 1
        metrics, exp = ppo_step(ppo)
        if i >= env["warmup"]:
            rows.append(metrics | {"response_tokens": float(exp.mask.sum())})
    mean = {k: sum(r[k] for r in rows) / len(rows)
            for k in ("perf/rollout_s", "perf/score_s", "perf/train_s", "perf/step_s",
                      "response_tokens")}
    peaks = [r["perf/max_memory_gb"] for r in rows if "perf/max_memory_gb" in r]
    return {"status": "ok", "steps": len(rows), "rollout_s": mean["perf/rollout_s"],
            "score_s": mean["perf/score_s"], "train_s": mean["perf/train_s"],
            "step_s": mean["perf/step_s"], "response_tokens": mean["response_tokens"],
            "peak_memory_gb": max(peaks) if peaks else None}


def cells(modes: list[str]) -> list[dict[str, Any]]:
    return [{"section": "ppo", "mode": m} for m in modes]
