"""Fixtures of the real-model suite: the SmolLM2 directory, the base model's answers, the data.

The model directory is ``$ALIGN_REAL_MODEL`` or ``~/.cache/align/smollm2-135m-instruct``
(what ``python scripts/get_smollm2.py`` writes); every test here is skipped with that hint
when it is absent. The base model's greedy answers (the rejected side of the training pairs
and the "before" of every comparison) take a few minutes on 2 cores, so they are cached in
``$ALIGN_CACHE/real`` (default ``~/.cache/align/real``) under the model's content hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from align.cache import cache_dir
from tests.conftest import write_jsonl
from tests.real import harness, task

# These runs are a handful of large matmuls, not thousands of tiny ones: use every core
# (the top-level conftest pins tiny-model tests to one thread). Set when a real-model test
# runs, not at import: collecting this folder must not change the default suite's threads.
THREADS = int(os.environ.get("ALIGN_REAL_THREADS") or os.cpu_count() or 1)


def model_hash(path: Path) -> str:
    """Content hash of the weights and tokenizer (cache key of the base model's answers)."""
    h = hashlib.sha256()
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        with open(path / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def real_model() -> Path:
    path = harness.model_dir()
    if not (path / "config.json").exists():
        pytest.skip(f"no real model at {path}: run `python scripts/get_smollm2.py` "
                    "(or set ALIGN_REAL_MODEL=DIR) first")
    import torch

    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    torch.set_num_threads(THREADS)
    return path


def _cached(name: str, key: str, compute: Any) -> Any:
    path = cache_dir() / "real" / f"{name}-{key}.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1), encoding="utf-8")
    tmp.replace(path)
    return value


@pytest.fixture(scope="session")
def base_answers(real_model: Path) -> dict[str, Any]:
    """The base model's greedy answers: 'train' to the fact prompts, 'held_out' scored."""
    key = f"{model_hash(real_model)}-t{harness.REJECTED_TOKENS}-e{harness.EVAL_TOKENS}"

    def compute() -> dict[str, Any]:
        model, tok = harness.load_policy(real_model)
        train = harness.greedy(model, tok, [q for q, _ in task.FACTS], harness.REJECTED_TOKENS)
        held = harness.greedy(model, tok, [h.prompt for h in task.HELD_OUT], harness.EVAL_TOKENS)
        return {"train": {"texts": train.texts, "ended": train.ended},
                "held_out": harness.score(held)}

    cached = _cached("base", key, compute)
    # the answers are cached, their scores are not: the gold measure may have changed since
    held = cached["held_out"]["answers"]
    cached["held_out"] = harness.score(harness.Answers([a["answer"] for a in held],
                                                       [a["ended"] for a in held]))
    return cached


@pytest.fixture(scope="session")
def data(base_answers: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The task's datasets, one file per format (see tests/real/task.py for the design)."""
    root = tmp_path_factory.mktemp("real-data")
    pairs = []
    for (prompt, good), bad, ended in zip(task.FACTS, base_answers["train"]["texts"],
                                          base_answers["train"]["ended"]):
        if task.gold(bad, ended) < 1.0:  # keep pairs whose rejected side really is worse
            pairs.append({"prompt": task.chat(prompt),
                          "chosen": [{"role": "assistant", "content": good}],
                          "rejected": [{"role": "assistant", "content": bad}]})
    unpaired = []
    for p in pairs:
        unpaired.append({"prompt": p["prompt"], "completion": p["chosen"], "label": True})
        unpaired.append({"prompt": p["prompt"], "completion": p["rejected"], "label": False})
    held = base_answers["held_out"]["answers"]
    held_pairs = [{"prompt": task.chat(h.prompt),
                   "chosen": [{"role": "assistant", "content": h.answer}],
                   "rejected": [{"role": "assistant", "content": a["answer"]}]}
                  for h, a in zip(task.HELD_OUT, held) if a["gold"] < 1.0]
    return {
        "pairwise": write_jsonl(root / "pairwise.jsonl", pairs),
        "unpaired": write_jsonl(root / "unpaired.jsonl", unpaired),
        "sft": write_jsonl(root / "sft.jsonl", [
            {"prompt": task.chat(q), "completion": [{"role": "assistant", "content": a}]}
            for q, a in task.FACTS]),
        "prompts": write_jsonl(root / "prompts.jsonl",
                               [{"prompt": task.chat(q)} for q, _ in task.FACTS]),
        "held_out_pairs": write_jsonl(root / "held_out_pairs.jsonl", held_pairs),
    }


@pytest.fixture(scope="session")
def sft_model(real_model: Path, data: dict[str, Path],
              tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """The SFT stage on the chosen answers: its own row in the table, and PPO's actor (the
    RLHF pipeline's order: SFT, reward model, PPO). Returns (directory, seconds)."""
    out = tmp_path_factory.mktemp("sft") / "sft"
    wall, code = harness.run_align(["sft", "--model", real_model, "--dataset", data["sft"],
                                    "--output-dir", out, "--max-steps", harness.SFT_STEPS,
                                    "--learning-rate", harness.SFT_LR, *harness.OFFLINE_FLAGS])
    assert code == 0, f"the SFT stage failed (exit code {code})"
    return out, wall


@pytest.fixture(scope="session")
def sft_eval(sft_model: tuple[Path, float]) -> dict[str, Any]:
    """The SFT stage's held-out answers, scored (the table's sft row and PPO's start)."""
    return harness.evaluate(sft_model[0])
