"""The sampled answers of an online run (PPO, GRPO, RLOO), a few per logged step, in
``samples.jsonl`` next to ``metrics.jsonl``: what the policy actually wrote, with its reward.

One JSON object per answer, written at each logged step (``--log-samples`` of them, spread over
the rollout batch so that several prompts show, and in GRPO several answers to one prompt)::

    {"step": 12, "prompt": "...", "answer": "...", "reward": 0.75,
     "rewards": {"accuracy": 1.0, "format": 0.5}, "advantage": 0.41, "tool_calls": 1}

``prompt`` and ``answer`` are text, or chat messages (a list of ``{"role", "content"}``) for
chat prompts; with tools the answer holds every turn after the prompt (the assistant's calls,
the tools' results). ``rewards`` (one value per reward source), ``advantage`` and
``tool_calls`` are there when the trainer knows them. A text longer than :data:`MAX_CHARS` is
cut (the file stays small: a few KB per logged step).

The file reads as if the run never stopped: a resumed run drops the rows written after its
checkpoint, and a step written again after a rollback replaces what followed it. ``align
board`` reads the file incrementally (align/board/runs.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SAMPLES_FILE = "samples.jsonl"
MAX_CHARS = 4000  # per text: longer answers are cut, with a note of how much


def spread(n: int, k: int) -> list[int]:
    """``k`` indices out of ``n``, evenly spaced from the first (all of them when k >= n)."""
    if k >= n:
        return list(range(n))
    return [i * n // k for i in range(k)]


def clip_text(value: Any) -> Any:
    """``value`` JSON-ready, each text cut to :data:`MAX_CHARS` (messages: each content)."""
    if isinstance(value, str):
        extra = len(value) - MAX_CHARS
        return value if extra <= 0 else value[:MAX_CHARS] + f" ... [{extra} more characters]"
    if isinstance(value, dict):
        return {str(k): clip_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clip_text(v) for v in value]
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if value - value == 0 else str(value)  # JSON has no NaN/inf (as metrics)
    return clip_text(str(value))


def count_tool_calls(answer: Any) -> int | None:
    """Tool calls in an answer made of messages: one tool message answers each call, a call
    that could not be read included (TRL's loop and align's, align/agents/loop.py, both
    write one); None for a plain-text answer."""
    if not isinstance(answer, list):
        return None
    return sum(1 for m in answer if isinstance(m, dict) and m.get("role") == "tool")


class SamplesWriter:
    """Append a few sampled answers per logged step to ``output_dir/samples.jsonl``.

    ``per_step`` 0 writes nothing. A new run starts the file empty; with ``resume_step`` the
    rows after that step are dropped at the first write; a step at or before the last one
    written (a rollback) drops the rows from that step on first. Rank 0 only writes."""

    def __init__(self, output_dir: str | Path, per_step: int,
                 resume_step: int | None = None) -> None:
        self.path = Path(output_dir) / SAMPLES_FILE
        self.per_step = per_step
        self.resume_step = resume_step
        self.last: int | None = None  # the last step written by this writer

    def write(self, step: int, rows: list[dict[str, Any]]) -> int:
        """Write ``per_step`` of ``rows`` (spread over them) for ``step``; how many."""
        if self.per_step <= 0 or not rows:
            return 0
        if self.last is None:
            self._cut(self.resume_step)
        elif step <= self.last:
            self._cut(step - 1)
        self.last = step
        lines = []
        for i in spread(len(rows), self.per_step):
            row = {"step": int(step), **clip_text(rows[i])}
            if "tool_calls" not in row and (calls := count_tool_calls(row.get("answer"))):
                row["tool_calls"] = calls
            lines.append(json.dumps(row, ensure_ascii=False) + "\n")
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write("".join(lines))
        return len(lines)

    def _cut(self, keep_to: int | None) -> None:
        """Keep only the rows of steps <= ``keep_to`` (None: none), atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keep = [r for r in read_samples(self.path) if r.get("step", 0) <= keep_to] \
            if keep_to is not None and self.path.exists() else []
        tmp = self.path.with_name(SAMPLES_FILE + ".tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in keep),
                       encoding="utf-8")
        os.replace(tmp, self.path)  # a kill here leaves the old file or the new, whole


def read_samples(path: str | Path) -> list[dict[str, Any]]:
    """Every row of a samples.jsonl (a directory is taken to hold one); a line cut short by a
    killed run is left out."""
    p = Path(path)
    if p.is_dir():
        p = p / SAMPLES_FILE
    rows = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows
