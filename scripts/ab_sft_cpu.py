"""A/B of SFT's forward in length groups on a CPU (issue 29; align.algos.sft.use_length_groups):
one process, the arms alternating on the same data and seed, so that a change in a shared
machine's load hits both alike.

    python scripts/ab_sft_cpu.py quickstart --work DIR          # the quickstart's SFT stage (seed 0)
    python scripts/ab_sft_cpu.py agent --work DIR               # the agent stage's SFT (seed 0)
    python scripts/ab_sft_cpu.py smollm2 --work DIR             # SmolLM2-135M-Instruct, mixed-length chats,
                                                                #   against plain TRL SFTTrainer
    python scripts/ab_sft_cpu.py padding --work DIR             # how much of each batch is padding, and
                                                                #   what 1-4 groups compute
    python scripts/ab_sft_cpu.py call-cost --work DIR --threads N   # a forward+backward call's fixed
                                                                #   cost, in positions (GROUP_COST)

``quickstart`` and ``agent`` run the stage's own ``align sft`` (``align.quickstart.pipeline.
train``, its recipe and data) with the groups (``groups``) and without (``one``: align's SFT as
before, one padded forward a batch), ``--reps`` times each, alternating (ABBA), and print
``train_runtime`` (the training loop) and the final loss. ``--max-steps`` cuts the run short
(each step's batches are the full run's first). ``smollm2`` times ``--steps`` training steps of
align's SFT with and without the groups and of TRL's SFTTrainer with its defaults, on the same
batches. ``--max-groups`` sets :data:`align.algos.sft.MAX_GROUPS` for the ``groups`` arm.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SMOLLM2 = "/root/.cache/align/smollm2-135m-instruct"


def quickstart_data(work: Path, which: str, seed: int) -> tuple[str, Path, dict]:
    """The base model, the SFT data and the extra flags of the quickstart's SFT stage
    (``sft``) or its agent stage's (``agent``), built as the quickstart builds them."""
    import json as _json

    from align.data.io import write_jsonl
    from align.quickstart import agent, pipeline, task

    opts = pipeline.Options(out=work / which, seed=seed)
    if which == "quickstart":
        base = pipeline.build_base(opts)
        rng = random.Random(seed)
        prompts, _ = task.split_prompts(seed)
        data = work / which / "sft.jsonl"
        write_jsonl(pipeline.sft_rows(rng, prompts, 3000), data)
        return str(base), data, {}
    pairs = agent.split(seed)["sft"][:agent.SFT_ROWS]
    data = work / which / "sft.jsonl"
    write_jsonl(agent.demonstrations(pairs, _json.dumps([agent.schema()])), data)
    base = agent.build_model(work / which / "base", seed, pairs)
    return str(base), data, {"chat_template": "chatml-tools", **agent.SFT}


def stage_ab(args: argparse.Namespace) -> None:
    from align.algos import sft
    from align.metrics import read_metrics
    from align.quickstart import pipeline

    base, data, flags = quickstart_data(args.work, args.mode, args.seed)
    if args.max_steps:
        flags["max_steps"] = args.max_steps
    keep_apply, keep_groups = sft.length_groups_apply, sft.MAX_GROUPS
    results: dict[str, list] = {"groups": [], "one": []}
    for rep in range(args.reps):
        for arm in list(results)[::1 if rep % 2 == 0 else -1]:  # ABBA: no arm always first
            sft.length_groups_apply = keep_apply if arm == "groups" else (lambda trainer: False)
            sft.MAX_GROUPS = args.max_groups or keep_groups
            out = args.work / f"{args.mode}-{arm}"
            opts = pipeline.Options(out=args.work, seed=args.seed, threads=args.threads)
            opts.stage_threads = args.threads
            wall = time.time()
            pipeline.train("sft", base, data, out, opts, save_steps=10_000, **flags)
            wall = time.time() - wall
            final = [r for r in read_metrics(out) if "train_runtime" in r][-1]
            losses = [r["loss"] for r in read_metrics(out) if "loss" in r]
            results[arm].append(final["train_runtime"])
            print(f"rep {rep} {arm}: train_runtime {final['train_runtime']:.2f} s, run {wall:.2f} "
                  f"s, last logged loss {losses[-1]:.4f}", flush=True)
    sft.length_groups_apply, sft.MAX_GROUPS = keep_apply, keep_groups
    g, o = (sum(v) / len(v) for v in results.values())
    print(f"{args.mode}: groups {g:.2f} s, one forward {o:.2f} s: {g / o:.3f}x "
          f"({args.reps} each, alternating)")


def padding(args: argparse.Namespace) -> None:
    """Padding share of the stage's batches and the positions 1-4 groups would compute."""
    from align.algos import sft
    from tests.algos.conftest import make_config

    for which in ("quickstart", "agent"):
        base, data, flags = quickstart_data(args.work, which, args.seed)
        cfg, rows = make_config("sft", Path(base), data, args.work / f"pad-{which}",
                                batch_size=32, max_length=flags.get("max_length", 1024))
        if flags.get("chat_template"):
            cfg.model.chat_template = flags["chat_template"]
        trainer, _ = sft.build_trainer(cfg, rows)
        real, padded = 0, 0
        by_groups = {k: 0 for k in (1, 2, 3, 4)}
        lengths_seen = []
        for batch, _ in zip(trainer.get_train_dataloader(), range(args.batches)):
            lengths = batch["attention_mask"].sum(1).tolist()
            lengths_seen += lengths
            real += sum(lengths)
            padded += len(lengths) * max(lengths)
            for k in by_groups:
                groups = sft.length_groups(lengths, k, 0)
                by_groups[k] += sum(len(g) * max(lengths[i] for i in g) for g in groups)
        print(f"{which}: rows {min(lengths_seen)}-{max(lengths_seen)} tokens, mean "
              f"{sum(lengths_seen) / len(lengths_seen):.1f}; padding {1 - real / padded:.1%} of "
              f"the positions; positions computed by 1-4 groups (no group cost): "
              + ", ".join(f"{k}: {v / padded:.3f}" for k, v in by_groups.items()), flush=True)


def call_cost(args: argparse.Namespace) -> None:
    """Time a forward and backward of the quickstart's tiny model (align's plain head) at
    several batch shapes and fit time = fixed + per-position x positions: the fixed cost in
    positions is what one more group costs (:data:`align.algos.sft.GROUP_COST`)."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from align.algos.sft import use_plain_head

    torch.set_num_threads(args.threads or torch.get_num_threads())
    base, _, _ = quickstart_data(args.work, "quickstart", args.seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    use_plain_head(model)
    model.train()
    xs, ys = [], []
    for rows, width in [(2, 10), (4, 20), (8, 20), (12, 30), (16, 25), (32, 25), (16, 41),
                        (32, 41)]:
        ids = torch.randint(3, model.config.vocab_size, (rows, width))
        mask = torch.ones_like(ids)

        def step() -> None:
            model.zero_grad()
            model(input_ids=ids, attention_mask=mask, labels=ids, fused_lm_head=True,
                  use_cache=False).loss.backward()

        for _ in range(3):
            step()
        start = time.perf_counter()
        for _ in range(30):
            step()
        ys.append((time.perf_counter() - start) / 30)
        xs.append(rows * width)
        print(f"{rows} x {width}: {ys[-1] * 1000:.2f} ms", flush=True)
    fixed, per = np.linalg.lstsq(np.vstack([np.ones(len(xs)), xs]).T, np.array(ys), rcond=None)[0]
    print(f"fixed {fixed * 1000:.2f} ms a call, {per * 1e6:.2f} us a position: a call costs "
          f"{fixed / per:.0f} positions ({torch.get_num_threads()} threads)")


def chat_rows(n: int, seed: int) -> list[dict]:
    """Chat rows of mixed lengths, as real SFT data has: short factual answers and long
    explanations (the answers of scripts/real_task_data.py's style, made up here)."""
    rng = random.Random(seed)
    words = ("the model learns from data and each answer explains a step of the method with "
             "care so that a reader can follow the reasoning from start to end").split()
    rows = []
    for i in range(n):
        q = " ".join(rng.choice(words) for _ in range(rng.randint(5, 15))) + "?"
        k = rng.choice([rng.randint(3, 12), rng.randint(40, 90), rng.randint(150, 250)])
        a = " ".join(rng.choice(words) for _ in range(k)) + "."
        rows.append({"messages": [{"role": "user", "content": q},
                                  {"role": "assistant", "content": a}]})
    return rows


def smollm2(args: argparse.Namespace) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from align.algos import sft
    from align.data.io import write_jsonl
    from tests.algos.conftest import make_config

    torch.set_num_threads(args.threads or torch.get_num_threads())
    rows = chat_rows(args.batch_size * args.steps, args.seed)
    data = args.work / "chats.jsonl"
    write_jsonl(rows, data)

    def align_trainer(groups: bool) -> object:
        sft.length_groups_apply = (lambda t: groups) if not groups else keep
        cfg, valid = make_config("sft", Path(SMOLLM2), data, args.work / f"align-{groups}",
                                 batch_size=args.batch_size)
        return sft.build_trainer(cfg, valid)[0]

    keep = sft.length_groups_apply
    trainers = {"align groups": align_trainer(True), "align one": align_trainer(False)}
    sft.length_groups_apply = keep
    tok = AutoTokenizer.from_pretrained(SMOLLM2)
    trl = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(SMOLLM2),
                     args=SFTConfig(output_dir=str(args.work / "trl"), report_to="none",
                                    per_device_train_batch_size=args.batch_size,
                                    use_cpu=True, seed=42),
                     processing_class=tok, train_dataset=Dataset.from_list(rows))
    trainers["TRL"] = trl
    batches = {name: [t._prepare_inputs(b) for b, _ in zip(t.get_train_dataloader(),
                                                           range(args.steps))]
               for name, t in trainers.items()}
    shapes = {name: [tuple(b["input_ids"].shape) for b in bs] for name, bs in batches.items()}
    print("batch shapes:", json.dumps(shapes), flush=True)
    lengths = [b["attention_mask"].sum(1).tolist() for b in batches["align groups"]]
    print("groups:", [[(len(g), max(ls[i] for i in g)) for g in sft.length_groups(ls)]
                      for ls in lengths], flush=True)
    times: dict[str, list] = {name: [] for name in trainers}
    for rep in range(args.reps):
        for name, t in list(trainers.items())[::1 if rep % 2 == 0 else -1]:  # no arm always first
            t.model.train()
            for b in batches[name]:
                t.model.zero_grad()
                wall = time.time()
                loss = t.compute_loss(t.model, dict(b))
                loss.backward()
                times[name].append(time.time() - wall)
                print(f"rep {rep} {name}: {times[name][-1]:.2f} s, loss {loss.item():.4f}",
                      flush=True)
    base = sum(times["TRL"]) / len(times["TRL"])
    for name, ts in times.items():
        m = sum(ts) / len(ts)
        print(f"{name}: {m:.2f} s a step (forward + backward, {len(ts)} timed), {m / base:.3f}x TRL")


def main() -> None:
    from align.plan import pin_cpu_math

    pin_cpu_math()  # the quickstart's math mode (MKL's strict AVX2 path), before torch loads
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["quickstart", "agent", "smollm2", "padding", "call-cost"])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--max-groups", type=int, default=None)
    p.add_argument("--steps", type=int, default=4, help="smollm2: timed steps per arm and rep")
    p.add_argument("--batch-size", type=int, default=8, help="smollm2: rows a batch")
    p.add_argument("--batches", type=int, default=40, help="padding: batches to count")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    {"smollm2": smollm2, "padding": padding, "call-cost": call_cost}.get(args.mode, stage_ab)(args)


if __name__ == "__main__":
    main()
