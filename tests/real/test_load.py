"""The same PPO run on SmolLM2-135M-Instruct at any machine load.

A busy machine changes how many threads a run gets (a launcher that sizes them from the load, a
job queue that gives one core), and MKL's matrix products used to round the rows at the edge of
each thread's share differently: the reward model's scores of the same responses differed at 1
and 2 threads, and from there the whole run (docs/real-model.md, "The same result on any machine
load"). Here one short PPO runs on every core of a quiet machine, the other on one thread beside
processes that keep every core busy; every logged metric and the saved weights must agree to the
bit. Each run is a fresh ``python -m align`` process, as a user starts it: the math libraries are
set up when torch loads, which in this test process has happened long ago.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_jsonl
from tests.real import task

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parents[2]
# Metrics that measure the machine, not the run.
MACHINE_METRICS = ("perf/", "time")


@pytest.fixture(scope="module")
def scorer(real_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reward model made on the spot: the policy's backbone with a seeded score head (what it
    scores does not matter here, only that both runs are scored by the same one)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path_factory.mktemp("load") / "rm"
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(real_model, num_labels=1,
                                                               use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(real_model)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def ppo(real_model: Path, rm: Path, prompts: Path, out: Path, threads: int, busy: bool
        ) -> tuple[list[dict[str, Any]], str]:
    """Three PPO steps in a fresh process at ``threads`` threads, beside one busy process per
    core if ``busy``; returns the logged rows and a hash of the saved actor's weights."""
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    env |= {"OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "align", "rlhf", "--algo", "ppo", "--model", real_model,
            "--reward-model", rm, "--dataset", prompts, "--output-dir", out, "--max-steps", "3",
            "--rollout-batch-size", "4", "--per-device-train-batch-size", "2",
            "--max-new-tokens", "16", "--ppo-epochs", "2", "--save-steps", "1000",
            "--report-to", "none", "--logging-steps", "1", "--seed", "0"]
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 1)] if busy else []
    try:
        done = subprocess.run([str(a) for a in argv], env=env, capture_output=True, text=True)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    with open(out / "model.safetensors", "rb") as f:
        return rows, hashlib.file_digest(f, "sha256").hexdigest()


def test_ppo_gives_the_same_run_on_a_busy_machine_at_another_thread_count(
        real_model, scorer, tmp_path):
    prompts = write_jsonl(tmp_path / "prompts.jsonl",
                          [{"prompt": task.chat(q)} for q, _ in task.FACTS[:8]])
    quiet, quiet_weights = ppo(real_model, scorer, prompts, tmp_path / "quiet",
                               os.cpu_count() or 1, busy=False)
    busy, busy_weights = ppo(real_model, scorer, prompts, tmp_path / "busy", 1, busy=True)
    assert [r["step"] for r in quiet] == [r["step"] for r in busy] == [1, 2, 3]
    for a, b in zip(quiet, busy):
        keys = {k for k in a.keys() | b.keys() if not k.startswith(MACHINE_METRICS)}
        differ = {k: (a.get(k), b.get(k)) for k in sorted(keys) if a.get(k) != b.get(k)}
        assert not differ, f"step {a['step']}: {differ}"
    assert quiet[-1]["objective/kl"] != 0.0  # the policy moved: the updates were compared too
    assert quiet_weights == busy_weights
