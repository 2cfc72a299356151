"""Development runs of PPO on SmolLM2-135M-Instruct: choose settings on the dev prompts.

    python -m tests.real.ppo_dev --start sft --seed 0 -- --actor-lr 1e-5 --max-steps 12
    python -m tests.real.ppo_dev --start base --split held_out --seed 1 -- ...  # once, at the end

The stages before PPO are made once and kept under ``--work`` (default
``$ALIGN_CACHE/real/ppo-dev``): the task's data, the SFT stage and the reward model, with the
settings of the real suite (tests/real/test_online.py). Each PPO run is judged on ``--split``
(dev by default: the held-out prompts are for the final report only) and appends one line to
``WORK/runs.jsonl``: the flags, the gold before and after, the wall time and the machine load;
its ``metrics.jsonl`` is kept as ``WORK/metrics/NAME.jsonl`` (the detectors' evidence). The
answers are greedy, so ``--seed`` (passed to PPO) is the only seed of a run; ``--split`` picks
the prompts it is judged on, never the ones it trains on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.real import harness

ROOT = Path(__file__).resolve().parents[2]
RM_STEPS, RM_LR = 30, "1e-5"


def align(argv: list[Any], log: Path) -> float:
    """Run ``python -m align ARGV`` with its output in ``log``; fail loudly; return seconds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.time()
    with open(log, "w", encoding="utf-8") as fh:
        code = subprocess.call([sys.executable, "-m", "align", *map(str, argv)], env=env,
                               stdout=fh, stderr=subprocess.STDOUT)
    if code:
        sys.exit(f"align {' '.join(map(str, argv))} exited {code}; see {log}")
    return time.time() - start


def stages(work: Path) -> dict[str, Any]:
    """The data, SFT model and reward model (made once, then reused)."""
    model = harness.model_dir()
    base = harness.base_answers(model)
    data = harness.write_data(base, work / "data")
    sft, rm = work / "sft", work / "rm"
    if not (sft / "model.safetensors").exists():
        align(["sft", "--model", model, "--dataset", data["sft"], "--output-dir", sft,
               "--max-steps", harness.SFT_STEPS, "--learning-rate", harness.SFT_LR,
               *harness.OFFLINE_FLAGS], work / "sft.log")
        harness.drop_checkpoints(["--output-dir", sft])
    if not (rm / "model.safetensors").exists():
        align(["rlhf", "--algo", "rm", "--model", model, "--dataset", data["pairwise"],
               "--output-dir", rm, "--max-steps", RM_STEPS, "--learning-rate", RM_LR,
               *harness.OFFLINE_FLAGS], work / "rm.log")
        harness.drop_checkpoints(["--output-dir", rm])
    return {"model": model, "base": base, "data": data, "sft": sft, "rm": rm}


def main(argv: list[str] | None = None) -> None:
    from align.cache import cache_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", choices=("sft", "base"), default="sft")
    parser.add_argument("--split", choices=tuple(harness.SPLITS), default="dev")
    parser.add_argument("--seed", type=int, default=0, help="PPO's --seed")
    parser.add_argument("--work", type=Path, default=cache_dir() / "real" / "ppo-dev")
    parser.add_argument("--name", default="")
    parser.add_argument("--keep", action="store_true", help="keep the PPO run's directory")
    parser.add_argument("ppo_flags", nargs="*", help="flags for align rlhf --algo ppo")
    args = parser.parse_args(argv)
    if "--seed" in args.ppo_flags:
        parser.error("give the seed as ppo_dev's --seed (it is recorded in runs.jsonl)")
    s = stages(args.work)
    start_model = s["sft"] if args.start == "sft" else s["model"]
    before = harness.evaluate(start_model, split=args.split) if args.start == "sft" \
        else s["base"][args.split]
    out = args.work / "runs" / (args.name or time.strftime("%H%M%S"))
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    wall = align(["rlhf", "--algo", "ppo", "--model", start_model, "--reward-model", s["rm"],
                  "--dataset", s["data"]["prompts"], "--output-dir", out, "--report-to",
                  "none", "--save-steps", "100000", "--seed", args.seed, *args.ppo_flags],
                 out.with_suffix(".log"))
    after = harness.evaluate(out, split=args.split)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "reward/raw" in r]
    (args.work / "metrics").mkdir(exist_ok=True)
    shutil.copy(out / "metrics.jsonl", args.work / "metrics" / f"{out.name}.jsonl")
    row = {"name": out.name, "start": args.start, "split": args.split, "seed": args.seed,
           "flags": args.ppo_flags,
           "gold_before": before["gold"], "gold_after": after["gold"],
           "words_after": after["mean_words"], "ended_after": after["ended"],
           "wall_s": round(wall, 1), "load_before": load, "load_after": os.getloadavg()[0],
           "reward_first": train[0]["reward/raw"] if train else None,
           "reward_last": train[-1]["reward/raw"] if train else None,
           "kl_last": train[-1]["objective/kl"] if train else None,
           "answers": [a["answer"][:100] for a in after["answers"][:6]]}
    with open(args.work / "runs.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k != "answers"}))
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
