"""Where `align quickstart`'s time goes: each stage split into fixed overhead and per-step work.

    pip install py-spy                                   # a sampling profiler; not a dependency
    python scripts/profile_quickstart.py --record spy.txt      # runs the quickstart under it
    python scripts/profile_quickstart.py spy.txt               # summarises an earlier record

``--record`` runs ``align quickstart --seed 0 --threads 1 --device cpu`` under ``py-spy record
--format raw`` (one thread, so that every stage runs in this one process, one after the other,
and each sample belongs to one stage) and then summarises the record. The summary gives, per
stage, the seconds sampled and how they split into phases, read from each sample's call stack:
imports, building the trainer (TRL's tokenization of the data, loading the model), training
steps (forward, backward, optimizer, batch collation), sampling (generate), saving checkpoints,
the held-out evaluation and the curves' checkpoints. py-spy samples wall time at ``--rate``
per second, so a phase's seconds are its samples over the rate; threads that only wait (tqdm's
monitor) are left out.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
from pathlib import Path

# (phase, any of these in the stack): the first match names a sample's phase
PHASES = (
    ("import", ("_find_and_load",)),
    ("curve checkpoints", ("curve (align/quickstart",)),
    ("evaluation, labelling", ("evaluate (align/quickstart", "label_pairs (", "rm_accuracy (")),
    ("sampling (generate)", ("GenerationMixin.generate", "generate_share (")),
    ("trainer: tokenize data", ("_prepare_dataset", "Dataset.map", "rendered (align")),
    ("trainer: load model", ("from_pretrained",)),
    ("trainer: other set-up", ("build_trainer", "build_cpo_trainer", "Trainer.__init__")),
    ("save checkpoints", ("_save_checkpoint", "mark_complete", "save_models (", "save_model (",
                          "finish_output (")),
    ("step: backward", ("backward",)),
    ("step: optimizer", ("Optimizer", "optimizer.py", "lr_scheduler.py", "_clip_grad_norm",
                         "zero_grad")),
    ("step: FLOP count", ("floating_point_ops",)),
    ("step: batch collation", ("get_batch_samples", "collat")),
    ("step: forward and loss", ("training_step (", "ppo_step (", "compute_loss (")),
    ("logging, callbacks", ("_maybe_log_save_evaluate", "on_log (", "on_step_end (")),
    ("runner: data, plan", ("load_data (", "check_plan (", "preflight (", "open_output_dir (")),
)
WAITING = ("TMonitor.run", "Event.wait", "Condition.wait")


def stage_of(stack: str) -> str:
    """The quickstart stage a sample belongs to, from the pipeline's functions on its stack."""
    if "prepare_policy (" in stack:
        return "sft" if "train (align/quickstart/pipeline.py" in stack else "base model"
    if "algo_stage (" in stack:
        if "ppo_run (" in stack or "align/ppo/" in stack:
            return "ppo"
        m = re.search(r"align/algos/(\w+)\.py", stack)
        name = m.group(1) if m else ""
        return name if name and name not in ("watched", "common", "online") else \
            ("grpo" if name == "online" else "algorithms: evaluation, runner")
    if "label_pairs (" in stack:
        return "preference data"
    if "algos/rm.py" in stack:
        return "reward model"
    if "quickstart/report.py" in stack:
        return "summary, curves.png"
    return "start-up, other"


def phase_of(stack: str) -> str:
    for phase, marks in PHASES:
        if any(m in stack for m in marks):
            return phase
    return "other"


def summarise(raw: Path, rate: float) -> str:
    """One line per stage, most seconds first: its seconds and its phases' (0.1 s and up)."""
    by_stage: collections.Counter[str] = collections.Counter()
    by_phase: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in raw.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        if any(w in stack.split(";")[-1] for w in WAITING):
            continue
        stage = stage_of(stack)
        by_stage[stage] += int(count)
        by_phase[stage][phase_of(stack)] += int(count)
    total = sum(by_stage.values()) / rate
    lines = [f"{total:.1f} s sampled in all"]
    for stage, n in by_stage.most_common():
        parts = ", ".join(f"{p} {c / rate:.1f}" for p, c in by_phase[stage].most_common()
                          if c / rate >= 0.1)
        lines.append(f"{stage:<30} {n / rate:5.1f} s  {parts}")
    phases: collections.Counter[str] = sum(by_phase.values(), collections.Counter())
    steps = sum(c for p, c in phases.items() if p.startswith("step") or p.startswith("sampling"))
    lines.append(f"training steps and sampling {steps / rate:.1f} s; the rest "
                 f"{total - steps / rate:.1f} s: " + ", ".join(
                     f"{p} {c / rate:.1f}" for p, c in phases.most_common()
                     if not (p.startswith("step") or p.startswith("sampling"))))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("raw", nargs="?", type=Path, help="A py-spy raw record to summarise.")
    parser.add_argument("--record", type=Path, help="Run the quickstart under py-spy into this "
                        "file first.")
    parser.add_argument("--rate", type=float, default=50.0, help="Samples per second.")
    parser.add_argument("--out", default="runs/quickstart-profile",
                        help="The profiled quickstart's output directory.")
    args = parser.parse_args()
    raw = args.record or args.raw
    if raw is None:
        parser.error("give a record to summarise, or --record FILE")
    if args.record:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "TRL_EXPERIMENTAL_SILENCE": "1"}
        subprocess.run(["py-spy", "record", "-r", f"{args.rate:g}", "-f", "raw", "-o",
                        str(args.record), "--", sys.executable, "-m", "align", "quickstart",
                        "--seed", "0", "--threads", "1", "--device", "cpu", "--out", args.out],
                       check=True, env=env)
    print(summarise(raw, args.rate))


if __name__ == "__main__":
    main()
