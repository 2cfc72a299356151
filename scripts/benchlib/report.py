"""The benchmark's printed tables (markdown, ready for docs/benchmarks.md)."""

from __future__ import annotations

from typing import Any


def _num(value: Any, fmt: str = "{:,.0f}") -> str:
    return "—" if value is None else fmt.format(value)


def _status(r: dict[str, Any]) -> str:
    return "ok" if r.get("status") == "ok" else f"{r.get('status')}: {r.get('reason', '')}"


def dpo_table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| mode | run | tokens/s | MFU | peak GB | x TRL tokens/s | x TRL memory | status |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        name = "TRL defaults" if r["impl"] == "trl" else f"align {r['variant']}"
        out.append(f"| {r['mode']} | {name} | {_num(r.get('tokens_per_s'))} | "
                   f"{_num(r.get('mfu'), '{:.1%}')} | {_num(r.get('peak_memory_gb'), '{:.2f}')} | "
                   f"{_num(r.get('speedup_vs_trl'), '{:.2f}')} | "
                   f"{_num(r.get('memory_vs_trl'), '{:.2f}')} | {_status(r)} |")
    return out


def rollout_table(rows: list[dict[str, Any]], batch: int, new_tokens: int) -> list[str]:
    out = [f"| mode | engine (batch {batch}, {new_tokens} new tokens) | tokens/s | x plain | "
           "warm-up s | peak GB | status |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        for name, e in (r.get("rollout") or {}).items():
            out.append(f"| {r['mode']} | {name} | {_num(e.get('tokens_per_s'))} | "
                       f"{_num(e.get('speedup_vs_plain'), '{:.2f}')} | "
                       f"{_num(e.get('warmup_s'), '{:.2f}')} | "
                       f"{_num(e.get('peak_memory_gb'), '{:.2f}')} | {_status(e)} |")
        if not r.get("rollout"):
            out.append(f"| {r['mode']} | — | — | — | — | — | {_status(r)} |")
    return out


def step_table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| mode | rollout s | scoring s | training s | step s | peak GB | status |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        s = r.get("step") or r
        out.append(f"| {r['mode']} | {_num(s.get('rollout_s'), '{:.3f}')} | "
                   f"{_num(s.get('score_s'), '{:.3f}')} | {_num(s.get('train_s'), '{:.3f}')} | "
                   f"{_num(s.get('step_s'), '{:.3f}')} | "
                   f"{_num(s.get('peak_memory_gb'), '{:.2f}')} | {_status(s)} |")
    return out


def render(result: dict[str, Any]) -> str:
    """Every table of a benchmark result, with the device and versions above them."""
    d, v, s = result["device"], result["versions"], result["settings"]
    lines = [f"device: {d['name']} ({d['kind']}); torch {v['torch']}, transformers "
             f"{v['transformers']}, trl {v['trl']}, peft {v['peft']}; align {v['align_commit']}",
             f"shape: {s['shape']} ({result['params'] / 1e6:,.1f}M parameters)", ""]
    if "dpo" in result:
        lines += [f"DPO: {s['dpo_batch']} pairs of {s['prompt_len']}+{s['completion_len']} "
                  f"tokens per step, {s['steps']} timed steps after {s['warmup']}", ""]
        lines += dpo_table(result["dpo"]) + [""]
    if "ppo" in result:
        if any("rollout" in r for r in result["ppo"]):
            lines += [f"PPO rollouts: {s['ppo_batch']} prompts of {s['ppo_prompt_len']} "
                      f"tokens, {s['new_tokens']} new tokens", ""]
            lines += rollout_table(result["ppo"], s["ppo_batch"], s["new_tokens"]) + [""]
        lines += [f"PPO step ({s['ppo_steps']} timed after {s['ppo_warmup']}; "
                  f"extra flags: {' '.join(s['ppo_flags']) or 'none'})", ""]
        lines += step_table(result["ppo"]) + [""]
        lines += ["PPO update against one plain forward+backward of the actor on the same "
                  "tokens (ratio per pass: update / (plain x ppo_epochs x 2 models))", ""]
        lines += update_table(result["ppo"]) + [""]
        lines += ["PPO memory by layout (GB; peak RSS per process: run with --isolate)", ""]
        lines += memory_table(result["ppo"]) + [""]
    return "\n".join(lines)


def update_table(cells: list[dict[str, Any]]) -> list[str]:
    out = ["| mode | update s | plain fwd+bwd s | passes | ratio per pass | status |",
           "| --- | --- | --- | --- | --- | --- |"]
    for c in cells:
        u = c.get("update") or {}
        if u.get("status") == "ok":
            out.append(f"| {c['mode']} | {u['update_s']:.2f} | "
                       f"{u['plain_forward_backward_s']:.2f} | {u['passes']} | "
                       f"{u['ratio_per_pass']:.2f} | ok |")
        elif u:
            out.append(f"| {c['mode']} | — | — | — | — | {u.get('status')}: "
                       f"{u.get('reason', u.get('error', ''))} |")
    return out


def memory_table(cells: list[dict[str, Any]]) -> list[str]:
    """Parameter bytes on the training device and offloaded, trainable and optimizer bytes,
    peak resident memory and the step's peak CUDA memory, per PPO layout."""
    out = ["| mode | weights on device | weights offloaded | trainable | optimizer state | "
           "peak RSS | step peak CUDA |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for c in cells:
        m = c.get("memory")
        if not m:
            continue
        cuda = (c.get("step") or {}).get("peak_memory_gb")
        out.append(f"| {c['mode']} | {m['param_bytes_device'] / 1e9:.3f} | "
                   f"{m['param_bytes_offloaded'] / 1e9:.3f} | {m['trainable_bytes'] / 1e9:.3f} | "
                   f"{m['optimizer_bytes'] / 1e9:.3f} | {m['peak_rss_gb']:.2f} | "
                   f"{'—' if cuda is None else f'{cuda:.2f}'} |")
    return out


if __name__ == "__main__":  # python scripts/benchlib/report.py RESULT.json ...: the tables again
    import json
    import sys

    for path in sys.argv[1:]:
        data = json.loads(open(path, encoding="utf-8").read())
        state = "" if data.get("complete", True) else " (INCOMPLETE: cut short)"
        print(f"## {path}{state}\n\n{render(data)}")
