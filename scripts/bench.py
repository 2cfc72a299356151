"""Measure align's training and rollout speed and memory against plain TRL / transformers.

    python scripts/bench.py --smoke                      # tiny shape, CPU, seconds (CI)
    python scripts/bench.py --shape 0.5b --out bench-0.5b.json          # on a GPU
    python scripts/bench.py --shape 7b --modes qlora --only ppo --ppo-flags \
        "--gradient-checkpointing --local-rollout-forward-batch-size 8"

One run measures, side by side, on random-initialised models of a real shape (Qwen2.5 0.5B,
1.5B, 7B, built from config dicts: no download):

- dpo: tokens/s, MFU and peak GPU memory of align's `align rlhf --algo dpo` (with our defaults
  and the flags of each variant in benchlib/dpo.py) against TRL's DPOTrainer with its default
  settings, on the same model, batch and sequence lengths; full, LoRA and QLoRA;
- ppo: rollout tokens/s of align's generator against plain `model.generate` at the same batch
  and number of new tokens, and one PPO step split into rollout, scoring and training seconds
  (the trainer's own perf/* timers), with its peak memory; full, LoRA and QLoRA.

It prints markdown tables and writes every number, with the device, the package versions and
this command, to --out (JSON). On a CUDA machine each measurement runs in its own process
(--isolate), so that one's memory or an out-of-memory error cannot touch the next. Numbers from
a CPU (--smoke) only show that the benchmark runs; they are not performance evidence.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchlib, when imported as a module

from benchlib import device as dev  # noqa: E402
from benchlib import models  # noqa: E402

SMOKE = dict(shape="tiny", modes="full,lora,qlora", steps=2, warmup=1, dpo_batch=2,
             prompt_len=12, completion_len=12, dpo_variants="defaults,precompute",
             ppo_batch=4, ppo_prompt_len="4-12", new_tokens=8, ppo_steps=1, ppo_warmup=1,
             device="cpu")
UNITS = {
    "tokens_per_s": "tokens per second (DPO: prompt+chosen and prompt+rejected tokens; "
                    "rollouts: generated positions, batch x new columns)",
    "mfu": "6 x parameters x tokens/s / the device's dense bf16 peak (None: unknown device)",
    "*_gb": "GB (1e9 bytes) of torch.cuda.max_memory_allocated; None on CPU (not measured)",
    "*_s": "seconds of wall clock, the device synchronised",
    "speedup_vs_trl, speedup_vs_plain, memory_vs_trl": "ratio to the baseline in the same "
                                                        "mode and run",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true",
                   help="tiny shape on CPU with tiny batches: checks the benchmark runs")
    p.add_argument("--shape", choices=list(models.SHAPES), default="0.5b")
    p.add_argument("--reward-shape", choices=list(models.SHAPES),
                   help="PPO reward model / critic shape (default: --shape)")
    p.add_argument("--only", default="dpo,ppo", help="sections to run: dpo, ppo")
    p.add_argument("--modes", default="full,lora,qlora", help="full, lora, qlora")
    p.add_argument("--steps", type=int, default=10, help="timed DPO steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed DPO steps before them")
    p.add_argument("--dpo-batch", type=int, default=8, help="pairs per step")
    p.add_argument("--prompt-len", type=int, default=256, help="DPO prompt tokens")
    p.add_argument("--completion-len", type=int, default=256,
                   help="DPO chosen / rejected tokens (EOS included)")
    p.add_argument("--dpo-variants", default=",".join(_dpo_variants()),
                   help="align variants to measure (benchlib/dpo.py VARIANTS)")
    p.add_argument("--ppo-batch", type=int, default=128, help="prompts per rollout")
    p.add_argument("--ppo-prompt-len", default="64-256",
                   help="prompt lengths, MIN-MAX tokens (uniform)")
    p.add_argument("--new-tokens", type=int, default=256, help="tokens generated per prompt")
    p.add_argument("--repeats", type=int, default=1, help="timed generations per engine")
    p.add_argument("--rollout-warmup-tokens", type=int,
                   help="new tokens of each engine's untimed warm-up generation (default: "
                        "--new-tokens; fewer saves time, and the compiled engine's static cache "
                        "keeps its full length, so its compiled step is the one timed)")
    p.add_argument("--ppo-parts", default="rollout,step",
                   help="PPO measurements: rollout (engines against plain generate), step "
                        "(one PPO step split into rollout / scoring / training)")
    p.add_argument("--ppo-steps", type=int, default=2, help="timed PPO steps")
    p.add_argument("--ppo-warmup", type=int, default=1, help="untimed PPO steps before them")
    p.add_argument("--ppo-flags", default="", help="extra `align rlhf --algo ppo` flags")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's; --smoke: 1)")
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                   help="one process per measurement (default: on with CUDA)")
    p.add_argument("--work-dir", help="models, data and outputs (default: a temp dir, kept "
                   "between runs so models are built once)")
    p.add_argument("--no-baseline", action="store_true",
                   help="DPO: skip plain TRL (memory-only runs, e.g. the 7B shape)")
    p.add_argument("--deadline", type=float,
                   help="Unix time after which no measurement starts (recorded as skipped), "
                        "and a running isolated one is stopped (recorded as timeout)")
    p.add_argument("--cell-timeout", type=float,
                   help="seconds one isolated measurement may take (recorded as timeout)")
    p.add_argument("--out", default="bench.json",
                   help="JSON results, rewritten after every measurement (a run stopped "
                        "half-way keeps what it measured; 'complete' says whether it finished)")
    p.add_argument("--cell", help=argparse.SUPPRESS)  # internal: run one isolated measurement
    args = p.parse_args(argv)
    if args.smoke:
        given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
        for key, value in SMOKE.items():
            if "--" + key.replace("_", "-") not in given:
                setattr(args, key, value)
    return args


def _dpo_variants() -> list[str]:
    from benchlib.dpo import VARIANTS

    return list(VARIANTS)


def split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def setup(args: argparse.Namespace, device: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Build the models and data files once; return each section's environment."""
    work = Path(args.work_dir or Path(tempfile.gettempdir()) / "align-bench")
    os.environ["ALIGN_CACHE"] = str(work / "cache")  # --precompute-ref-logps caches here
    kind, shape = device["kind"], args.shape
    suffix = "bf16" if kind == "cuda" else "fp32"
    actor = models.build_model(shape, work / "models" / f"{shape}-lm-{suffix}", device=kind)
    base = {"work_dir": str(work), "device": device, "params": models.count_params(shape)}
    envs: dict[str, dict[str, Any]] = {}
    if "dpo" in split(args.only):
        n = args.dpo_batch * (args.warmup + args.steps)
        pairs = models.pairs_file(work / "data" / f"pairs-{shape}-{n}x{args.prompt_len}+"
                                  f"{args.completion_len}.jsonl", n, args.prompt_len,
                                  args.completion_len)
        envs["dpo"] = base | {"model": str(actor), "pairs": str(pairs), "batch": args.dpo_batch,
                              "steps": args.steps, "warmup": args.warmup}
    if "ppo" in split(args.only):
        rshape = args.reward_shape or shape
        rm = models.build_model(rshape, work / "models" / f"{rshape}-rm-{suffix}",
                                classifier=True, device=kind, seed=1)
        lo, hi = (int(x) for x in args.ppo_prompt_len.split("-"))
        n = args.ppo_batch * (args.ppo_warmup + args.ppo_steps + 1)
        prompts = models.prompts_file(work / "data" / f"prompts-{shape}-{n}x{lo}-{hi}.jsonl",
                                      n, lo, hi)
        envs["ppo"] = base | {"actor": str(actor), "reward_model": str(rm),
                              "prompts": str(prompts), "batch": args.ppo_batch,
                              "new_tokens": args.new_tokens, "repeats": args.repeats,
                              "warmup_tokens": args.rollout_warmup_tokens or args.new_tokens,
                              "parts": split(args.ppo_parts),
                              "steps": args.ppo_steps, "warmup": args.ppo_warmup,
                              "ppo_flags": shlex.split(args.ppo_flags)}
    dev.free_memory()
    return envs


def run_cell(cell: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this process; a failure (OOM, error) is a result, not a crash."""
    from benchlib import dpo, ppo

    dev.free_memory()
    started = time.perf_counter()
    try:  # the trainers' own printing goes to stderr, the tables alone to stdout
        with contextlib.redirect_stdout(sys.stderr):
            result = (dpo if cell["section"] == "dpo" else ppo).run(cell, env)
    except Exception as e:  # noqa: BLE001 -- recorded, and the other measurements still run
        result = dev.failure(e)
    dev.free_memory()
    return cell | result | {"cell_s": time.perf_counter() - started}


def run_isolated(cell: dict[str, Any], env: dict[str, Any], timeout: float | None = None
                 ) -> dict[str, Any]:
    """One measurement in a child process (its own CUDA memory and peak), stopped after
    ``timeout`` seconds; a stopped one returns the parts it had finished (``partial``)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cell.json"
        spec = json.dumps({"cell": cell, "env": env | {"partial_file": str(out)},
                           "out": str(out)})
        started = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, __file__, "--cell", spec], text=True,
                                  capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            tail = _tail(e.stderr)
            done = json.loads(out.read_text()) if out.exists() else {}
            return cell | done | {
                "status": "timeout", "cell_s": time.perf_counter() - started,
                "reason": f"stopped after {timeout:.0f} s{': ' + tail if tail else ''}"}
        if out.exists() and proc.returncode == 0:
            return json.loads(out.read_text())
    return cell | {"status": "error", "reason": f"exit {proc.returncode}: "
                                                f"{_tail(proc.stderr or proc.stdout)}"}


def _tail(text: str | bytes | None, lines: int = 3) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " | ".join((text or "").strip().splitlines()[-lines:])


class Schedule:
    """When each measurement may start and how long it may take (--deadline, --cell-timeout):
    a measurement that cannot start is a result (skipped), so a run cut short still says what
    it did not measure, and why."""

    def __init__(self, deadline: float | None, cell_timeout: float | None, isolate: bool):
        self.deadline, self.cell_timeout, self.isolate = deadline, cell_timeout, isolate

    def left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.time()

    def run(self, cell: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
        left = self.left()
        if left is not None and left < 5:
            return cell | {"status": "skipped", "reason": "out of time (--deadline)"}
        if not self.isolate:
            return run_cell(cell, env)
        limits = [t for t in (left, self.cell_timeout) if t is not None]
        return run_isolated(cell, env, min(limits) if limits else None)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cell:  # a child of run_isolated
        spec = json.loads(args.cell)
        result = run_cell(spec["cell"], spec["env"])
        Path(spec["out"]).write_text(json.dumps(result, default=str))
        return 0
    import torch

    if args.threads or args.smoke:
        torch.set_num_threads(args.threads or 1)
    started = time.perf_counter()
    kind = dev.device_kind(args.device)
    device = dev.device_info(kind)
    isolate = kind == "cuda" if args.isolate is None else args.isolate
    envs = setup(args, device)
    modes = split(args.modes)
    from benchlib import dpo, ppo, report

    given = argv if argv is not None else sys.argv[1:]
    result: dict[str, Any] = {
        "command": " ".join(shlex.quote(a) for a in ["python", "scripts/bench.py", *given]),
        "smoke": args.smoke,
        "note": ("smoke run: checks that the benchmark runs; not performance evidence"
                 if args.smoke else "CPU run: not performance evidence" if kind == "cpu"
                 else "measured on a GPU"),
        "device": device, "versions": dev.versions(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("cell", "out")}
        | {"isolate": isolate, "ppo_flags": shlex.split(args.ppo_flags)},
        "shape_config": models.SHAPES[args.shape], "params": models.count_params(args.shape),
        "units": UNITS,
    }
    schedule = Schedule(args.deadline, args.cell_timeout, isolate)
    out = Path(args.out)

    def save(complete: bool) -> None:  # after every measurement: a cut-short run keeps it
        result["complete"] = complete
        result["elapsed_s"] = time.perf_counter() - started
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")

    save(False)
    if "dpo" in envs:
        result["dpo"] = []
        for c in dpo.cells(modes, split(args.dpo_variants), baseline=not args.no_baseline):
            result["dpo"].append(schedule.run(c, envs["dpo"]))
            dpo.compare(result["dpo"])
            save(False)
    if "ppo" in envs:
        result["ppo"] = []
        for c in ppo.cells(modes):
            result["ppo"].append(schedule.run(c, envs["ppo"]))
            save(False)
    save(True)
    print(report.render(result))
    print(f"wrote {out} ({result['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
