"""The board's Answers panel: a trained model and a baseline answer the same prompts, side by
side, each answer scored by a reward model, as ``align generate --compare`` prints them.

It runs that very command (``python -m align generate --model M --compare B --reward-model RM
--prompts FILE --output FILE``, an argument list) in a child process, so the board itself never
loads torch or a model, and reads back the JSONL it writes. The models must be directories under
the served roots (a run's output, the quickstart's ``sft``); the prompts are what the user typed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from align.board.runs import PathRefused, inside
from align.errors import AlignError

TIMEOUT = 600.0  # seconds: two small models answering a few prompts on a CPU
MAX_PROMPTS = 20


def _model_dir(label: str, value: str | None, roots: list[Path], required: bool) -> str | None:
    if not value:
        if required:
            raise AlignError(f"{label} is required")
        return None
    path = Path(value).expanduser().resolve()
    if not any(inside(path, r) for r in roots):
        raise PathRefused(f"{label} {path} is outside the served directories")
    if not path.is_dir():
        raise AlignError(f"{label} {path} is not a directory")
    return str(path)


def command(model: str, baseline: str | None, reward_model: str | None, prompts_file: Path,
            output: Path, max_new_tokens: int) -> list[str]:
    argv = [sys.executable, "-m", "align", "generate", "--model", model,
            "--prompts", str(prompts_file), "--output", str(output),
            "--max-new-tokens", str(max_new_tokens), "--temperature", "0"]
    if baseline:
        argv += ["--compare", baseline]
    if reward_model:
        argv += ["--reward-model", reward_model]
    return argv


def answer(roots: list[Path], model: str, baseline: str | None, reward_model: str | None,
           prompts: list[str], max_new_tokens: int = 64) -> dict[str, Any]:
    """The answers of ``model`` (and ``baseline``) to ``prompts``, with reward-model scores:
    {"rows": [{prompt, response, score, compare_response, compare_score}], "command"}."""
    prompts = [p.strip() for p in prompts if p.strip()]
    if not prompts:
        raise AlignError("give at least one prompt (one per line)")
    if len(prompts) > MAX_PROMPTS:
        raise AlignError(f"at most {MAX_PROMPTS} prompts at a time")
    if not 1 <= int(max_new_tokens) <= 1024:
        raise AlignError("max new tokens: from 1 to 1024")
    model_dir = _model_dir("model", model, roots, True)
    base_dir = _model_dir("baseline", baseline, roots, False)
    rm_dir = _model_dir("reward model", reward_model, roots, False)
    assert model_dir is not None
    with tempfile.TemporaryDirectory(prefix="align-board-") as tmp:
        prompts_file = Path(tmp) / "prompts.jsonl"
        prompts_file.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts),
                                encoding="utf-8")
        output = Path(tmp) / "answers.jsonl"
        argv = command(model_dir, base_dir, rm_dir, prompts_file, output, int(max_new_tokens))
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise AlignError(f"align generate took more than {TIMEOUT:.0f} s") from None
        if done.returncode != 0 or not output.is_file():
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise AlignError(f"align generate failed: {last}")
        rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()
                if line.strip()]
    keep = ("prompt", "response", "score", "compare_response", "compare_score")
    return {"rows": [{k: r.get(k) for k in keep} for r in rows],
            "model": model_dir, "baseline": base_dir, "reward_model": rm_dir,
            "command": "align " + " ".join(argv[3:]).replace(str(prompts_file), "PROMPTS")
            .replace(str(output), "ANSWERS.jsonl")}
