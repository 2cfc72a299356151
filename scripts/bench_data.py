"""Peak memory and time of `align data validate` against `datasets.load_dataset` on one file.

    python scripts/bench_data.py --size-mb 1024            # writes the file to $TMPDIR, then deletes it
    python scripts/bench_data.py --file my.jsonl --format pairwise

Each side runs in its own fresh process (so neither inherits the other's memory or page cache
accounting) and is measured by the parent with ``getrusage(RUSAGE_CHILDREN)`` (peak resident
set size) and the wall clock:

- ``align``: ``python -m align data validate FILE --format F``, the command a user runs (it
  reads, validates and normalises every record into the Arrow dataset that training gets);
- ``datasets``: ``datasets.load_dataset("json", data_files=FILE, split="train")`` into an
  empty cache directory, the baseline: what `datasets` alone needs to read the same file.

The generated file is in the layout of HuggingFaceH4/ultrafeedback_binarized (a ``prompt``
column and chosen/rejected message lists that repeat the user turn, plus ``messages`` and
scores), the layout that makes align do the most work per record (the repeated turn is
checked and stripped). Text is random words, so sizes compress like real text would not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("the of and to in is that for it as with was on be by this are or an at from not "
         "but have which one all they we can has more will their if about would there what "
         "so out up when other into some time these only could new them then than first "
         "way may like been two also any after most where over our such through").split()


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def record(rng: random.Random, i: int) -> dict:
    """One record in HuggingFaceH4/ultrafeedback_binarized's layout (about 2 KB)."""
    prompt = _text(rng, rng.randint(20, 80))
    good, bad = _text(rng, rng.randint(80, 200)), _text(rng, rng.randint(80, 200))
    user = {"content": prompt, "role": "user"}
    return {"prompt": prompt, "prompt_id": f"{i:064x}",
            "chosen": [user, {"content": good, "role": "assistant"}],
            "rejected": [user, {"content": bad, "role": "assistant"}],
            "messages": [user, {"content": good, "role": "assistant"}],
            "score_chosen": float(rng.randint(6, 10)), "score_rejected": float(rng.randint(1, 5))}


def write_file(path: Path, size_mb: float, seed: int = 0) -> int:
    """Write records until the file reaches ``size_mb`` MB; return the record count."""
    rng, n, limit = random.Random(seed), 0, int(size_mb * 1e6)
    with path.open("w", encoding="utf-8") as fh:
        while fh.tell() < limit:
            fh.write(json.dumps(record(rng, n)) + "\n")
            n += 1
    return n


def measure(code: str, env: dict) -> dict:
    """Run ``python -c code`` in a fresh process; return its exit code, seconds, peak RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    if peak <= before:
        raise RuntimeError("this child's peak is not above an earlier one's; run each side in "
                           "its own bench invocation")
    return {"rc": proc.returncode, "seconds": round(seconds, 1),
            "peak_rss_gb": round(peak * 1024 / 1e9, 2), "tail": (proc.stdout + proc.stderr)[-400:]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--file", help="Measure this JSONL file instead of generating one.")
    p.add_argument("--size-mb", type=float, default=1024, help="Size of the generated file.")
    p.add_argument("--format", default="pairwise", help="Format passed to align data validate.")
    p.add_argument("--side", choices=("both", "align", "datasets"), default="both")
    p.add_argument("--out", help="Also write the results here (JSON).")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="align-bench-data-"))
    try:
        if args.file:
            path, n = Path(args.file), None
        else:
            path = work / "data.jsonl"
            n = write_file(path, args.size_mb)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
               "HF_DATASETS_CACHE": str(work / "hf-cache"), "ALIGN_CACHE": str(work / "align"),
               "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
        sides = {
            "datasets": ("import datasets; ds = datasets.load_dataset('json', "
                         f"data_files={str(path)!r}, split='train'); print(len(ds))"),
            "align": ("from align.cli import main; main(['data', 'validate', "
                      f"{str(path)!r}, '--format', {args.format!r}])"),
        }
        results = {"machine": f"{platform.node()}: {platform.processor() or platform.machine()}, "
                              f"{os.cpu_count()} CPUs, "
                              f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1e9:.0f}"
                              " GB RAM",
                   "python": platform.python_version(),
                   "file_mb": round(path.stat().st_size / 1e6), "records": n}
        # One child per side and per bench process keeps RUSAGE_CHILDREN's maximum honest:
        # the second side re-runs this script with --side.
        if args.side == "both":
            for side in ("datasets", "align"):
                proc = subprocess.run([sys.executable, __file__, "--file", str(path),
                                       "--format", args.format, "--side", side],
                                      capture_output=True, text=True, env=env)
                if proc.returncode:
                    raise SystemExit(proc.stderr[-2000:])
                results[side] = json.loads(proc.stdout.strip().splitlines()[-1])[side]
            a, d = results["align"], results["datasets"]
            results["ratio_rss"] = round(a["peak_rss_gb"] / d["peak_rss_gb"], 2)
            results["ratio_time"] = round(a["seconds"] / d["seconds"], 2)
        else:
            results[args.side] = measure(sides[args.side], env)
            if results[args.side]["rc"]:
                raise SystemExit(f"{args.side} failed: {results[args.side]['tail']}")
        print(json.dumps(results))
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
