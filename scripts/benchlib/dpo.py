"""DPO training throughput and memory: align's `align rlhf --algo dpo` path against TRL's
DPOTrainer with its default settings, on the same model, batch and sequence lengths.

Each measurement builds a trainer, runs ``warmup + steps`` optimizer steps and times the last
``steps`` (wall clock between the end of step ``warmup`` and the end of the last step, the
device synchronised at both ends). Tokens per step are read from the trainer's tokenized
dataset: every pair is prompt + chosen and prompt + rejected.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

# align variants: the flags added to `align rlhf --algo dpo` (on top of --bf16 on GPUs).
VARIANTS: dict[str, list[str]] = {
    "defaults": [],
    "precompute": ["--precompute-ref-logps"],
    "ckpt": ["--gradient-checkpointing"],
    "precompute+ckpt": ["--precompute-ref-logps", "--gradient-checkpointing"],
    "precompute+liger": ["--precompute-ref-logps", "--use-liger-kernel"],
}
MODE_FLAGS = {"full": [], "lora": ["--lora"], "qlora": ["--qlora"]}


def step_timer(warmup: int, device: str) -> Any:
    """A TrainerCallback that stamps the end of every optimizer step."""
    from transformers import TrainerCallback

    from align.perf import synchronize

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.ends: dict[int, float] = {}

        def _stamp(self, step: int) -> None:
            synchronize(device)
            self.ends[step] = time.perf_counter()

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._stamp(0)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._stamp(state.global_step)

        def seconds(self, steps: int) -> float:
            return self.ends[warmup + steps] - self.ends[warmup]

    return StepTimer()


def tokens_per_step(dataset: Any, batch: int) -> int:
    """Tokens in one batch of tokenized pairs (prompt + chosen, prompt + rejected)."""
    rows = dataset.select(range(batch))
    return sum(2 * len(r["prompt_ids"]) + len(r["chosen_ids"]) + len(r["rejected_ids"])
               for r in rows)


def align_argv(cell: dict[str, Any], env: dict[str, Any], out: Path) -> list[str]:
    """The `align rlhf` flags of one measurement."""
    argv = ["--algo", "dpo", "--model", env["model"], "--dataset", env["pairs"],
            "--output-dir", str(out), "--per-device-train-batch-size", str(env["batch"]),
            "--max-steps", str(env["warmup"] + env["steps"]), "--save-steps", "100000",
            "--report-to", "none", *MODE_FLAGS[cell["mode"]]]
    if env["device"]["kind"] == "cuda":
        argv.append("--bf16")
    return argv + VARIANTS[cell["variant"]]


def run_align(cell: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    """align's DPO: the trainer `align rlhf --algo dpo` builds, with our defaults and flags."""
    from align.algos import dpo
    from align.runner import seed_everything
    from benchlib.plan import prepare

    out = Path(env["work_dir"]) / "out" / f"dpo-{cell['mode']}-align-{cell['variant']}"
    argv = align_argv(cell, env, out)
    result: dict[str, Any] = {"command": "align rlhf " + " ".join(argv)}
    cfg, data, issues = prepare(argv)
    if issues:
        return result | {"status": "skipped", "reason": "; ".join(issues)}
    seed_everything(cfg.train.seed)
    timer = step_timer(env["warmup"], env["device"]["kind"])
    started = time.perf_counter()
    trainer, _ = dpo.build_trainer(cfg, data, None, callbacks=[timer])
    return result | _train(trainer, timer, env, time.perf_counter() - started)


def run_trl(cell: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    """Plain TRL: DPOConfig defaults (gradient checkpointing on, bf16 on GPUs, a reference
    copy loaded by TRL), the same model, batch, data and number of steps; LoRA/QLoRA with
    align's adapter settings (r 8, alpha 32, all linear layers)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from align.config import LoraArgs
    from align.models import lora_config, quantization_config
    from align.plan import has_package

    mode, cuda = cell["mode"], env["device"]["kind"] == "cuda"
    if mode == "qlora" and not (cuda and has_package("bitsandbytes")):
        return {"status": "skipped", "reason": "QLoRA needs a CUDA GPU and bitsandbytes"}
    lora = LoraArgs(lora=mode == "lora", qlora=mode == "qlora")
    overrides: dict[str, Any] = dict(
        output_dir=str(Path(env["work_dir"]) / "out" / f"dpo-{mode}-trl"),
        per_device_train_batch_size=env["batch"], max_steps=env["warmup"] + env["steps"],
        report_to="none", save_strategy="no")
    if not cuda:  # TRL's bf16=True default is meant for GPUs
        overrides |= dict(use_cpu=True, bf16=False)
    load: dict[str, Any] = {"dtype": torch.bfloat16 if cuda else torch.float32}
    if lora.qlora:
        load |= {"quantization_config": quantization_config(lora), "device_map": {"": 0}}
    torch.manual_seed(0)
    timer = step_timer(env["warmup"], env["device"]["kind"])
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(env["model"], **load)
    tokenizer = AutoTokenizer.from_pretrained(env["model"])
    rows = Dataset.from_json(env["pairs"])
    trainer = DPOTrainer(model=model, args=DPOConfig(**overrides), train_dataset=rows,
                         processing_class=tokenizer, peft_config=lora_config(lora),
                         callbacks=[timer])
    shown = {k: v for k, v in overrides.items() if k != "output_dir"}
    return ({"command": f"DPOTrainer(model, args=DPOConfig({shown}), peft_config="
                        f"{'LoRA' if lora.enabled else None}) [TRL defaults otherwise]"}
            | _train(trainer, timer, env, time.perf_counter() - started))


def _train(trainer: Any, timer: Any, env: dict[str, Any], build_s: float) -> dict[str, Any]:
    """Train, then read the timer and the peak memory; free the trainer's models."""
    from align.perf import peak_memory_gb
    from benchlib.device import mfu

    per_step = tokens_per_step(trainer.train_dataset, env["batch"])
    cuda = env["device"]["kind"] == "cuda"
    try:
        trainer.train()
    finally:
        if cuda:  # drop the trainer's references to models and optimizer
            trainer.accelerator.free_memory()
    seconds = timer.seconds(env["steps"])
    tps = env["steps"] * per_step / seconds
    return {"status": "ok", "build_s": build_s, "tokens_per_step": per_step,
            "steps": env["steps"], "seconds": seconds, "tokens_per_s": tps,
            "mfu": mfu(env["params"], tps, env["device"]),
            "peak_memory_gb": peak_memory_gb("cuda") if cuda else None}


def cells(modes: list[str], variants: list[str], baseline: bool = True
          ) -> list[dict[str, Any]]:
    """Per mode: plain TRL first (the baseline, unless ``baseline`` is off), then each align
    variant."""
    out = []
    for mode in modes:
        if baseline:
            out.append({"section": "dpo", "mode": mode, "impl": "trl", "variant": "defaults"})
        out += [{"section": "dpo", "mode": mode, "impl": "align", "variant": v} for v in variants]
    return out


def run(cell: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    return (run_trl if cell["impl"] == "trl" else run_align)(cell, env)


def compare(results: list[dict[str, Any]]) -> None:
    """Add each align row's ratios to plain TRL in the same mode (tokens/s, peak memory)."""
    base = {r["mode"]: r for r in results if r["impl"] == "trl" and r.get("status") == "ok"}
    for r in results:
        b = base.get(r["mode"])
        if r["impl"] != "align" or r.get("status") != "ok" or b is None:
            continue
        r["speedup_vs_trl"] = r["tokens_per_s"] / b["tokens_per_s"]
        if r.get("peak_memory_gb") and b.get("peak_memory_gb"):
            r["memory_vs_trl"] = r["peak_memory_gb"] / b["peak_memory_gb"]
