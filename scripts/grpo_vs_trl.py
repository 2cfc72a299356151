"""align's GRPO against plain TRL GRPOTrainer, side by side, same model, data and settings.

    python scripts/grpo_vs_trl.py --model ~/.cache/align/smollm2-135m-instruct \
        --dataset prompts.jsonl --reward-fn tests/real/rewards.py:concise_reward

Runs `align rlhf --algo grpo` and then a plain `trl.GRPOTrainer` built from the same
settings (learning rate, batch, group size, completion length, scheduler, seed, no gradient
checkpointing, float32, no reference model kept apart from TRL's own), alternating the order
over ``--repeats`` rounds, and compares TRL's own ``train_runtime`` (the training loop only:
no loading, evaluation or final save). Prints one JSON line per run and the ratio; note the
machine's load (``uptime``) with the numbers, as other processes change them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def settings(args: argparse.Namespace) -> dict:
    return dict(learning_rate=args.learning_rate, per_device_train_batch_size=args.batch,
                num_generations=args.num_generations, max_completion_length=args.max_tokens,
                max_steps=args.steps, lr_scheduler_type="constant", warmup_steps=0,
                seed=args.seed, logging_steps=args.steps, save_strategy="no",
                report_to="none", use_cpu=True, gradient_checkpointing=False, beta=0.04,
                bf16=False)


def run_align(args: argparse.Namespace, out: Path) -> float:
    from align.cli import main
    from align.metrics import read_metrics

    argv = ["rlhf", "--algo", "grpo", "--model", args.model, "--dataset", args.dataset,
            "--reward-fn", args.reward_fn, "--output-dir", str(out), "--learning-rate",
            str(args.learning_rate), "--per-device-train-batch-size", str(args.batch),
            "--num-generations", str(args.num_generations), "--max-completion-length",
            str(args.max_tokens), "--max-steps", str(args.steps), "--lr-scheduler-type",
            "constant", "--warmup-ratio", "0", "--seed", str(args.seed), "--logging-steps",
            str(args.steps), "--save-steps", "100000", "--report-to", "none"]
    try:
        main(argv)
    except SystemExit as e:
        if e.code:
            raise
    rows = [r for r in read_metrics(out) if "train_runtime" in r]
    return float(rows[-1]["train_runtime"])


def run_trl(args: argparse.Namespace, out: Path) -> float:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from align.rewards.plugin import load_reward_fn

    rows = [json.loads(line) for line in Path(args.dataset).read_text().splitlines() if line]
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model)
    config = GRPOConfig(output_dir=str(out), **settings(args))
    trainer = GRPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                          reward_funcs=[load_reward_fn(args.reward_fn)],
                          processing_class=tokenizer)
    return float(trainer.train().metrics["train_runtime"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--reward-fn", required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--num-generations", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--learning-rate", type=float, default=2e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    times: dict[str, list[float]] = {"align": [], "trl": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            order = ("align", "trl") if i % 2 == 0 else ("trl", "align")
            for name in order:
                load = os.getloadavg()[0]
                fn = run_align if name == "align" else run_trl
                seconds = fn(args, Path(tmp) / f"{name}-{i}")
                times[name].append(seconds)
                print(json.dumps({"run": name, "round": i, "train_runtime_s": round(seconds, 1),
                                  "load_before": load, "load_after": os.getloadavg()[0],
                                  "time": time.strftime("%H:%M:%S")}), flush=True)
    a, t = sum(times["align"]) / args.repeats, sum(times["trl"]) / args.repeats
    print(json.dumps({"align_s": round(a, 1), "trl_s": round(t, 1), "ratio": round(a / t, 3)}))


if __name__ == "__main__":
    main()
