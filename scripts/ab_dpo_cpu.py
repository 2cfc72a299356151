"""A/B measurements behind docs/benchmarks.md's reference-cache section (issue 29): one
process, alternating arms on the same batches, so that a change in a shared machine's load hits
both arms alike. SmolLM2-135M-Instruct and bench_ref_cache.py's 56 pairs, batches of 4 pairs.

    python scripts/ab_dpo_cpu.py pass  --data PAIRS.jsonl --work DIR   # reference pass: TRL's vs align's by batch size
    python scripts/ab_dpo_cpu.py head  --data PAIRS.jsonl --work DIR   # DPO loss: head on every position vs answers only
    python scripts/ab_dpo_cpu.py split --data PAIRS.jsonl --work DIR   # DPO loss: one padded forward vs the chosen and rejected halves apart
    python scripts/ab_dpo_cpu.py step  --data PAIRS.jsonl --work DIR   # align's training step vs plain TRL's (defaults)

PAIRS.jsonl: ``python -c "import json, sys; sys.path.insert(0, 'scripts'); import
bench_ref_cache as b; print(''.join(json.dumps(r) + '\\n' for r in b.pairs(56)), end='')"``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def align_trainer(model: str, data: str, work: Path) -> object:
    from align.algos import dpo
    from tests.algos.conftest import make_config

    cfg, rows = make_config("dpo", Path(model), Path(data), work / "align", batch_size=4,
                            max_length=1024, precompute_ref_logps=True)
    return dpo.build_trainer(cfg, rows)[0]


def first_batches(trainer: object, n: int = 2) -> list[dict]:
    return [trainer._prepare_inputs(b) for b, _ in zip(trainer.get_train_dataloader(), range(n))]


def ab_pass(trainer: object, reps: int) -> None:
    from align.algos import ref_logps

    ds, coll, model = trainer.train_dataset, trainer.data_collator, trainer.model.eval()
    seqs = ref_logps.sequences(ds, coll.max_length, coll.truncation_mode)
    t = time.time()
    trl = []
    for s in range(0, ds.num_rows, 4):
        c, r = trainer.compute_ref_log_probs(model, coll([ds[i] for i in range(s, min(s + 4, ds.num_rows))]))
        trl += list(zip(c.tolist(), r.tolist()))
    print(f"TRL pass (4 pairs a batch): {time.time() - t:.1f} s", flush=True)
    for b in (4, 8, 16, 1, 32):
        t = time.time()
        lp = ref_logps.sequence_logps(model, seqs, coll.pad_token_id, batch_size=b)
        took = time.time() - t
        err = max(abs(float(lp[2 * i].sum()) - c) + abs(float(lp[2 * i + 1].sum()) - r)
                  for i, (c, r) in enumerate(trl))
        print(f"align pass, {b} sequences a batch: {took:.1f} s (max diff {err:.2e})", flush=True)


def timed_arms(arms: dict, batches: list[dict], reps: int, *models: object) -> None:
    """Time each arm (batch -> what to print) on every batch, arms alternating, ``reps`` times."""
    times: dict = {name: [] for name in arms}
    for rep in range(reps):
        for name, step in arms.items():
            for b in batches:
                for model in models:
                    model.zero_grad()
                wall, cpu = time.time(), time.process_time()
                value = step(b)
                times[name].append((time.time() - wall, time.process_time() - cpu))
                print(f"rep {rep} {name}: {times[name][-1][0]:.2f} s wall, "
                      f"{times[name][-1][1]:.2f} s CPU, {value}", flush=True)
    for name, ts in times.items():
        print(f"{name}: mean {sum(w for w, _ in ts) / len(ts):.2f} s wall, "
              f"{sum(c for _, c in ts) / len(ts):.2f} s CPU ({len(ts)} timed)")


def loss_step(model: object, loss_of: object) -> object:
    """A timed arm: ``loss_of(model, batch)``, its backward, and what to print."""
    def step(b):
        loss = loss_of(model, b)
        loss.backward()
        return f"loss {loss.item():.6f}, head grad norm {model.lm_head.weight.grad.norm().item():.6f}"
    return step


def ab_head(trainer: object, reps: int) -> None:
    from trl import DPOTrainer

    model = trainer.model.train()

    timed_arms({"every position (TRL)":
                loss_step(model, lambda m, b: DPOTrainer.compute_loss(trainer, m, b)),
                "answer positions (align)": loss_step(model, trainer.compute_loss)},
               first_batches(trainer), reps, model)


def ab_split(trainer: object, reps: int) -> None:
    """align's DPO loss in one forward of the padded batch against its chosen and rejected
    halves apart (``align.algos.ref_logps.PairHalves``), the head on the answers in both."""
    from trl import DPOTrainer

    from align.algos import ref_logps

    model = trainer.model.train()

    def whole(m, b):
        with ref_logps.answer_positions_only():
            return DPOTrainer.compute_loss(trainer, m, b)

    timed_arms({"whole batch": loss_step(model, whole),
                "two halves (align)": loss_step(model, trainer.compute_loss)},
               first_batches(trainer), reps, model)


def ab_step(trainer: object, reps: int, model_dir: str, data: str, work: Path) -> None:
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    trl = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir),
                     args=DPOConfig(output_dir=str(work / "trl"), max_steps=20,
                                    per_device_train_batch_size=4, report_to="none",
                                    save_strategy="no", use_cpu=True),
                     processing_class=AutoTokenizer.from_pretrained(model_dir),
                     train_dataset=load_dataset("json", data_files=data, split="train"))
    print("TRL gradient checkpointing:", trl.args.gradient_checkpointing)
    batches = first_batches(trainer)
    for t in (trainer, trl):  # what Trainer.train sets up before its first step
        t.current_gradient_accumulation_steps = 1
        t.model.train()
        if t.args.gradient_checkpointing:
            t.model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs=t.args.gradient_checkpointing_kwargs)
    def step(t: object, strip: bool):
        def run(b):
            if strip:  # plain TRL computes the reference log-probs itself
                b = {k: v for k, v in b.items() if not k.startswith("ref_")}
            return f"loss {t.training_step(t.model, b).item():.4f}"
        return run

    timed_arms({"align": step(trainer, False), "TRL": step(trl, True)}, batches, reps,
               trainer.model, trl.model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("pass", "head", "split", "step"))
    parser.add_argument("--model", default=str(Path.home() / ".cache/align/smollm2-135m-instruct"))
    parser.add_argument("--data", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    work = Path(args.work)
    trainer = align_trainer(args.model, args.data, work)
    if args.what == "pass":
        ab_pass(trainer, args.reps)
    elif args.what == "head":
        ab_head(trainer, args.reps)
    elif args.what == "split":
        ab_split(trainer, args.reps)
    else:
        ab_step(trainer, args.reps, args.model, args.data, work)


if __name__ == "__main__":
    main()
