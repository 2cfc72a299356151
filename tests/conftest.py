"""Shared fixtures: tiny random models and toy datasets, built on the spot (no network)."""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
# Tiny models gain nothing from intra-op threads, and two threads fighting over two cores
# (pytest plus a subprocess, or CI's neighbours) slow each small matmul by orders of magnitude.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# MKL's strict reproducible mode, as every `align` training command sets it before torch loads
# (align/plan.py): runs in this process and in the `align` subprocesses that tests start
# (killed and resumed runs, several processes) must round alike to be compared to the bit.
from align.plan import pin_thread_invariant_math  # noqa: E402  (no torch: before it loads)

pin_thread_invariant_math()


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run_cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """Run `align ARGS` in-process through the real entry point; return (code, out, err)."""
    from align.cli import main

    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def build_tiny_rm(out_dir: str | Path, tokenizer: Any | None = None, *, arch: str = "qwen2",
                  seed: int = 0, **config_kwargs: Any) -> Path:
    """Save a random one-output sequence classifier (a reward model) and its tokenizer, the
    tiny counterpart of align/tiny.py's build_tiny_lm (the product never needs a random RM)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from align.tiny import build_tokenizer, tiny_config

    tokenizer = tokenizer or build_tokenizer()
    torch.manual_seed(seed)
    config = tiny_config(tokenizer, arch, **config_kwargs)
    config.num_labels = 1
    model = AutoModelForSequenceClassification.from_config(config)
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_tokenizer() -> Any:
    from align.tiny import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> Path:
    """A random 2-layer Qwen2-shaped causal LM (hidden 64) saved with its tokenizer."""
    from align.tiny import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("tiny_lm"), tiny_tokenizer, seed=0)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> Path:
    from align.tiny import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("tiny_llama"), tiny_tokenizer, arch="llama",
                         seed=0)


@pytest.fixture(scope="session")
def tiny_rm(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> Path:
    """A random one-output sequence classifier with the same tokenizer."""
    return build_tiny_rm(tmp_path_factory.mktemp("tiny_rm"), tiny_tokenizer, seed=1)


def addition_pairs(n: int = 64, seed: int = 0) -> list[dict[str, Any]]:
    """A learnable toy preference set: the right sum is chosen, a wrong one rejected."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        rows.append({"prompt": f"{a} + {b} =", "chosen": f" {a + b}",
                     "rejected": f" {a + b + rng.randint(1, 5)}"})
    return rows


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "pairs.jsonl", addition_pairs())


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _no_stray_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["align"])
