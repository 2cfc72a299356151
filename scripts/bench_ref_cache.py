"""Whole-run time of align's DPO with --precompute-ref-logps against plain TRL, and the
quickstart's wall time with each stage's.

    python scripts/bench_ref_cache.py                       # SmolLM2-135M-Instruct, 2 rounds
    python scripts/bench_ref_cache.py --rounds 1 --no-quickstart

The DPO comparison (the setup of issue 29): SmolLM2-135M-Instruct (``--model``, converted by
scripts/get_smollm2.py), 56 preference pairs of the real-model task (tests/real/task.py: the
concise answer chosen, a padded, rambling one rejected), 20 optimizer steps of 4 pairs. align
runs ``align rlhf --algo dpo`` with its defaults (DPO + RPO, --rpo-alpha 1) and
``--precompute-ref-logps``; TRL runs ``DPOTrainer`` with its defaults at the same steps and
batch. Each run is a fresh process timed from start to exit (imports, loading, the reference
pass, training, saving), alternating align and TRL for ``--rounds`` rounds so that a change in
the machine's load hits both alike. align's second round, the same command again (same output
directory; align's cache key leaves the output directory out, so another would do too), finds
the reference log-probs of the first in its cache
($ALIGN_CACHE, under ``--work DIR``, else a temporary directory): that is the rerun case; the
first round is the cold case (each row says which it was, from align's output). The ratio
printed is align's whole-run time over TRL's, per round, in wall seconds and in CPU seconds
(user + system: on cores shared with other jobs, the wall time follows the load). Wrap it in the machine's exclusive
lock when other jobs share the cores; to keep each locked call short, run one round per call
with the same ``--work`` (``--rounds 1 --no-quickstart --work DIR``, twice).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RAMBLE = ("Well, that is a really interesting question, and there is a lot that could be said "
          "about it, so let me think about it step by step before I answer. ")
TAIL = (" I hope this helps, and please let me know if you would like me to explain any part "
        "of it in more detail, because there is always more to say.")

TRL_RUN = """
import sys
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer
model_dir, data, out = sys.argv[1:4]
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir)
args = DPOConfig(output_dir=out, max_steps=20, per_device_train_batch_size=4, report_to="none",
                 save_strategy="no", use_cpu=True, logging_steps=5)
trainer = DPOTrainer(model=model, args=args, processing_class=tok,
                     train_dataset=load_dataset("json", data_files=data, split="train"))
trainer.train()
trainer.save_model(out)
"""


def pairs(n: int) -> list[dict]:
    from tests.real import task

    rows = []
    for question, good in (task.FACTS * 2)[:n]:
        rows.append({"prompt": task.chat(question),
                     "chosen": [{"role": "assistant", "content": good}],
                     "rejected": [{"role": "assistant", "content": RAMBLE + good + TAIL}]})
    return rows


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds of ``cmd`` from start to exit, the CPU seconds it used (user + system, its
    children included), and what it printed. On cores shared with other jobs the wall time
    follows the load; the CPU time much less so."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    done = subprocess.run(cmd, check=True, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    wall = time.time() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(Path.home() / ".cache/align/smollm2-135m-instruct"))
    parser.add_argument("--records", type=int, default=56)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-quickstart", action="store_true")
    parser.add_argument("--work", default=None,
                        help="Keep align's cache and output directory here (default: a "
                             "temporary directory): a second call then reruns the first's.")
    parser.add_argument("--json", default=None, help="Write the results here too.")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "TRL_EXPERIMENTAL_SILENCE": "1"}
    results: dict = {"dpo": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        work = Path(args.work) if args.work else tmp_path
        env["ALIGN_CACHE"] = str(work / "cache")
        data = tmp_path / "pairs.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in pairs(args.records)))
        if not args.no_quickstart:
            out = tmp_path / "qs"
            wall, _, _ = timed([sys.executable, "-m", "align", "quickstart", "--out", str(out),
                                "--device", "cpu"], env)
            summary = json.loads((out / "summary.json").read_text())
            results["quickstart"] = {"wall_s": round(wall, 1),
                                     "threads": summary.get("cpu_threads"),
                                     "stages_s": summary["stage_seconds"]}
            print(f"quickstart: {wall:.1f} s wall ({summary.get('cpu_threads')} threads, "
                  f"{summary.get('algorithms_at_a_time', 1)} algorithms at a time)", flush=True)
            for name, seconds in summary["stage_seconds"].items():
                print(f"  {name:<16} {seconds:6.1f} s", flush=True)
        for r in range(args.rounds):
            align_cmd = [sys.executable, "-m", "align", "rlhf", "--algo", "dpo",
                         "--model", args.model, "--dataset", str(data), "--max-steps", "20",
                         "--per-device-train-batch-size", "4", "--precompute-ref-logps",
                         "--report-to", "none", "--save-steps", "1000",
                         "--output-dir", str(work / "align"), "--overwrite-output-dir"]
            align_s, align_cpu, log = timed(align_cmd, env)
            trl_s, trl_cpu, trl_log = timed([sys.executable, "-c", TRL_RUN, args.model, str(data),
                                             str(tmp_path / f"trl-{r}")], env)
            if args.work:  # what each run printed, to see where its time went
                (work / f"align-{r + 1}.log").write_text(log, encoding="utf-8")
                (work / f"trl-{r + 1}.log").write_text(trl_log, encoding="utf-8")
            row = {"round": r + 1, "align_s": round(align_s, 1), "trl_s": round(trl_s, 1),
                   "ratio": round(align_s / trl_s, 3), "align_cpu_s": round(align_cpu, 1),
                   "trl_cpu_s": round(trl_cpu, 1), "cpu_ratio": round(align_cpu / trl_cpu, 3),
                   "reference_cache": "cold" if "Computing reference log probs" in log
                   else "reused"}
            results["dpo"].append(row)
            print(f"dpo round {r + 1}: align {align_s:.1f} s wall, {align_cpu:.1f} s CPU "
                  f"({row['reference_cache']} reference cache); TRL {trl_s:.1f} s wall, "
                  f"{trl_cpu:.1f} s CPU; ratio {row['ratio']:.2f} wall, "
                  f"{row['cpu_ratio']:.2f} CPU", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
