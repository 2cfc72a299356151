"""PPO: rollout generation against plain ``model.generate``, and one PPO step split into
rollout, scoring and training, in each memory mode.

Everything runs on the roles `align rlhf --algo ppo` loads (``PPORun.create``), so the LoRA
modes hold one base for actor, critic and reference, and the reward model beside it.
Rollout engines generate the same batch of prompts with the same number of new tokens; their
tokens are the generated positions (batch x new columns), counted alike for every engine.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from benchlib.dpo import MODE_FLAGS

# PPO's memory layouts besides full/lora/qlora: LoRA with the critic on the reward model's base
# (the layout before the single-base one) and the single base with the reward model on CPU.
PPO_MODE_FLAGS = MODE_FLAGS | {
    "lora-rm-base": ["--lora", "--critic-base", "reward-model"],
    "lora-offload": ["--lora", "--offload-reward-model"],
}


def argv(mode: str, env: dict[str, Any]) -> list[str]:
    """The `align rlhf --algo ppo` flags of one mode; generation takes the whole rollout
    batch in one call."""
    out = Path(env["work_dir"]) / "out" / f"ppo-{mode}"
    args = ["--algo", "ppo", "--model", env["actor"], "--reward-model", env["reward_model"],
            "--dataset", env["prompts"], "--output-dir", str(out),
            "--rollout-batch-size", str(env["batch"]), "--max-new-tokens", str(env["new_tokens"]),
            "--rollout-generate-batch-size", str(env["batch"]),
            "--max-steps", str(env["warmup"] + env["steps"]), "--save-steps", "100000",
            "--report-to", "none", *PPO_MODE_FLAGS[mode]]
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

    actor, pad = ppo.roles.actor, ppo.roles.tokenizer.pad_token_id  # the actor adapter is active
    B, P = ids.shape

    def plain(new_tokens: int = env["new_tokens"]) -> int:
        out = actor.generate(input_ids=ids, attention_mask=mask.long(), do_sample=True,
                             max_new_tokens=new_tokens, pad_token_id=pad)
        return B * (out.shape[1] - P)

    def align(**extra: Any) -> Callable[..., int]:
        def run(new_tokens: int = env["new_tokens"]) -> int:
            s = sample(ppo.roles, ids, mask, **(generation_options(ppo, 1) | extra
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
    ids, mask, _, _ = next_prompts(ppo)
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
        result["update"] = _attempt(lambda: update_cost(ppo, env))
        partial(env, result | ({"rollout": ratios(rollout)} if rollout else {}))
    # last: a compiled generator keeps its CUDA graphs, which would count in the steps' peak
    if "rollout" in parts:
        rollout["align_hf_compiled"] = (
            time_engine("align_hf_compiled") if device == "cuda" else
            {"status": "skipped", "reason": "--compile-rollout needs CUDA (torch.compile + "
                                            "CUDA graphs)"})
    result |= {"status": "ok", "memory": memory(ppo)} | \
        ({"rollout": ratios(rollout)} if rollout else {})
    ppo = gens = None  # free the models before the next measurement (in-process runs)
    return result


def ratios(rollout: dict[str, Any]) -> dict[str, Any]:
    """Add each engine's tokens/s relative to plain generate's (``speedup_vs_plain``)."""
    plain = rollout.get("plain_generate", {})
    for r in rollout.values():
        if r.get("status") == "ok" and plain.get("status") == "ok":
            r["speedup_vs_plain"] = r["tokens_per_s"] / plain["tokens_per_s"]
    return rollout


def memory(ppo: Any) -> dict[str, Any]:
    """Bytes of parameters on the training device and elsewhere (offloaded models), of the
    optimizer's state, and this process's peak resident memory (meaningful with --isolate)."""
    import resource

    import torch

    r = ppo.roles
    offloaded = {id(r.reward): r.offload_reward, id(r.ref): r.offload_ref}
    seen, on_device, host = set(), 0, 0
    for m in (m for m in (r.model, r.ref, r.reward) if m is not None):
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                size = p.numel() * p.element_size()
                if offloaded.get(id(m)):
                    host += size
                else:
                    on_device += size
    optim = sum(t.numel() * t.element_size() for state in ppo.optim.optimizer.state.values()
                for t in state.values() if torch.is_tensor(t))
    trainable = sum(p.numel() * p.element_size() for p in r.model.trainable)
    return {"param_bytes_device": on_device, "param_bytes_offloaded": host,
            "trainable_bytes": trainable, "optimizer_bytes": optim,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9}


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
        metrics = ppo_step(ppo)
        if i >= env["warmup"]:
            tokens = metrics["perf/tokens_per_s"] * metrics["perf/step_s"]
            rows.append(metrics | {"response_tokens": tokens})
    mean = {k: sum(r[k] for r in rows) / len(rows)
            for k in ("perf/rollout_s", "perf/score_s", "perf/train_s", "perf/step_s",
                      "response_tokens")}
    peaks = [r["perf/max_memory_gb"] for r in rows if "perf/max_memory_gb" in r]
    return {"status": "ok", "steps": len(rows), "rollout_s": mean["perf/rollout_s"],
            "score_s": mean["perf/score_s"], "train_s": mean["perf/train_s"],
            "step_s": mean["perf/step_s"], "response_tokens": mean["response_tokens"],
            "peak_memory_gb": max(peaks) if peaks else None}


def update_cost(ppo: Any, env: dict[str, Any]) -> dict[str, Any]:
    """The PPO update of one rollout batch against one plain forward+backward of the actor on
    the same tokens (a causal-LM loss over every position, no PPO bookkeeping).

    The update runs ``ppo_epochs`` x (actor pass + critic pass) over the batch, so a ratio per
    pass near 1 means the bookkeeping (log-probs, masks, losses, micro-batching, adapter
    switches, the optimizer step) costs little; the optimizer steps are included."""
    from align.perf import synchronize
    from align.ppo.rollout import score
    from align.ppo.trainer import generate_share, generation_options, next_prompts, own_rows
    from align.ppo.update import compute_advantages, compute_rewards, ppo_update

    a, t, device = ppo.a, ppo.cfg.train, env["device"]["kind"]
    ids, mask, first, _ = next_prompts(ppo)
    exp = score(ppo.roles, generate_share(ppo, ids, mask, generation_options(ppo, 1, first)),
                temperature=a.temperature, chunk=a.local_rollout_forward_batch_size)
    rewards, _ = compute_rewards(a, exp, ppo.kl_ctl.value, ppo.reward_stats)
    advantages, returns, _ = compute_advantages(a, exp, rewards)
    batch = own_rows(ppo.dist, exp, advantages, returns)
    synchronize(device)
    started = time.perf_counter()
    ppo_update(ppo.roles, ppo.optim, batch, a, t.per_device_train_batch_size,
               t.max_grad_norm, True, ppo.dist)
    synchronize(device)
    update_s = time.perf_counter() - started
    model = ppo.roles.model
    model.train()
    input_ids, attention, positions = batch.sequences()
    plain = []
    for _ in range(2):  # the first warms up
        synchronize(device)
        started = time.perf_counter()
        for s in range(0, batch.batch_size, t.per_device_train_batch_size):
            rows = slice(s, s + t.per_device_train_batch_size)
            out = model.actor(input_ids=input_ids[rows], attention_mask=attention[rows],
                              position_ids=positions[rows], labels=input_ids[rows],
                              use_cache=False)
            out.loss.backward()
        synchronize(device)
        plain.append(time.perf_counter() - started)
        model.zero_grad(set_to_none=True)
    model.eval()
    passes = a.ppo_epochs * 2
    return {"status": "ok", "update_s": update_s, "plain_forward_backward_s": plain[-1],
            "passes": passes, "ratio_per_pass": update_s / (plain[-1] * passes),
            "tokens": int(attention.sum())}


def cells(modes: list[str]) -> list[dict[str, Any]]:
    return [{"section": "ppo", "mode": m} for m in modes]
