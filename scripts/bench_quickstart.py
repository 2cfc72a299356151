"""How fast `align quickstart` runs with each CPU thread count, on an idle or a busy machine.

    python scripts/bench_quickstart.py                              # the whole quickstart,
                                                                    # threads chosen from the load
    python scripts/bench_quickstart.py --busy 1                     # beside one busy process
    python scripts/bench_quickstart.py --threads 1,2 --algos dpo --repeats 2
    python scripts/bench_quickstart.py --agent                      # with the agent stage

Runs ``align quickstart --threads N`` in a subprocess for each thread count (``auto``: no
--threads, the quickstart chooses from the load; alternating, so
that a change in the machine's load hits every setting alike) and prints, per run: the wall
time of each stage (from summary.json), the whole run's wall and CPU time (user + system of the
subprocess), and the 1-minute load average before and after. CPU time is the figure that a
shared machine disturbs least: spin-waiting threads show up as CPU time spent for nothing.
``--busy K`` starts K busy-loop processes for the duration, to measure a loaded machine on
purpose. Results go to ``--json`` as well.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _spin() -> None:
    while True:
        pass


def run_once(threads: int | str, algos: str, seed: int, scale: float, out: Path,
             agent: bool = False) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "TRL_EXPERIMENTAL_SILENCE": "1"}
    env.pop("OMP_NUM_THREADS", None)  # the quickstart's --threads decides
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = os.getloadavg()[0]
    start = time.time()
    cmd = [sys.executable, "-m", "align", "quickstart", "--out", str(out), "--seed", str(seed),
           "--device", "cpu"]
    cmd += ["--algos", algos] if algos else []
    cmd += ["--threads", str(threads)] if threads != "auto" else []
    if scale != 1.0:
        cmd += ["--scale", str(scale)]
    cmd += ["--agent"] if agent else []
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.time() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = json.loads((out / "summary.json").read_text())
    return {"threads": threads, "chosen_threads": summary.get("cpu_threads"),
            "algorithms_at_a_time": summary.get("algorithms_at_a_time", 1),
            "wall_s": round(wall, 1),
            "cpu_s": round((after.ru_utime - before.ru_utime)
                           + (after.ru_stime - before.ru_stime), 1),
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
            "stages_s": summary["stage_seconds"],
            "gold": {k: round(v["gold_reward"], 3) for k, v in summary["algos"].items()},
            **({"agent_exact": {k: summary["agent"][k]["gold"] for k in ("sft", "grpo")}}
               if agent else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", default="auto",
                        help="Thread counts to compare, comma-separated; auto: from the load.")
    parser.add_argument("--algos", default="",
                        help="Algorithms of each quickstart run (default: the quickstart's).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--busy", type=int, default=0, help="Busy-loop processes to start.")
    parser.add_argument("--agent", action="store_true", help="Run the quickstart with --agent.")
    parser.add_argument("--json", default=None, help="Write the results here too.")
    args = parser.parse_args()
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for p in spinners:
        p.start()
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.repeats):
                for t in [x if x == "auto" else int(x) for x in args.threads.split(",")]:
                    res = run_once(t, args.algos, args.seed, args.scale,
                                   Path(tmp) / f"t{t}-r{r}", args.agent)
                    res["busy"] = args.busy
                    results.append(res)
                    print(json.dumps(res), flush=True)
    finally:
        for p in spinners:
            p.terminate()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
