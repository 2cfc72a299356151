#!/usr/bin/env python
"""Print the real-model suite's results as the markdown table of docs/real-model.md.

    python scripts/real_table.py [RESULTS.jsonl]   # default: $ALIGN_REAL_RESULTS or
                                                   # ~/.cache/align/real/results.jsonl

Every test of `pytest -m real` appends a row to the results file; the latest row of each run
name is shown, in the order the names first appear.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def default_results() -> Path:
    """The file tests/real/harness.py's results_file() appends to."""
    from align.cache import cache_dir

    return Path(os.environ.get("ALIGN_REAL_RESULTS") or cache_dir() / "real" / "results.jsonl")


def fmt(value: object, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def table(rows: list[dict]) -> str:
    latest: dict[str, dict] = {}
    for row in rows:
        if "gold_after" not in row and row["name"] != "rm":
            continue  # rows of other kinds (the quickstart run) are reported elsewhere
        latest[row["name"]] = row  # insertion order: first appearance; value: the last row
    lines = ["| run | gold before → after | concise answers before → after | mean words "
             "before → after | steps | wall time |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, r in latest.items():
        gold = f"{fmt(r.get('gold_before'), '.2f')} → {fmt(r.get('gold_after'), '.2f')}"
        acc = f"{fmt(r.get('accuracy_before'), '.0%')} → {fmt(r.get('accuracy_after'), '.0%')}"
        words = f"{fmt(r.get('words_before'), '.0f')} → {fmt(r.get('words_after'), '.0f')}"
        if name == "rm":
            gold, acc, words = "—", f"{acc} (held-out pairs ranked right)", "—"
        lines.append(f"| {name} | {gold} | {acc} | {words} | {r['steps']} | "
                     f"{r['wall_s'] / 60:.1f} min |")
    machines = sorted({r["machine"] for r in latest.values()})
    lines.append("")
    lines.append(f"Machine: {'; '.join(machines)}. Wall time is training only (loading "
                 "included, held-out evaluation not).")
    return "\n".join(lines)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else default_results()
    if not path.exists():
        sys.exit(f"error: no results at {path}; run `bash scripts/test_real.sh` first")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    print(table(rows))


if __name__ == "__main__":
    main()
