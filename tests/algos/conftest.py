"""Toy data sets the tiny models can learn in a few dozen steps, and loss-curve helpers."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from align.metrics import read_metrics
from tests.conftest import addition_pairs, write_jsonl

# Flags every end-to-end run shares: a large constant learning rate so that a tiny model
# shows a clear effect within a few dozen steps, batch 8, no mid-run checkpoints.
FAST = ["--per-device-train-batch-size", "8", "--lr-scheduler-type", "constant",
        "--warmup-ratio", "0", "--save-steps", "1000", "--report-to", "none"]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run fastest on one thread, and far more steadily on a shared CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def losses(out: Path, key: str = "loss") -> list[float]:
    """The logged training losses of a run, in step order."""
    return [r[key] for r in read_metrics(out) if key in r]


def assert_loss_falls(out: Path, min_drop: float = 0.05, min_points: int = 16) -> list[float]:
    """The mean of the last 4 logged losses is clearly below the mean of the first 4."""
    curve = losses(out)
    assert len(curve) >= min_points, curve
    assert mean(curve[-4:]) < mean(curve[:4]) - min_drop, curve
    return curve


def unpaired_rows() -> list[dict[str, Any]]:
    """Addition pairs split into thumbs-up (right sum) and thumbs-down (wrong sum) rows."""
    rows = []
    for p in addition_pairs():
        rows.append({"prompt": p["prompt"], "completion": p["chosen"], "label": True})
        rows.append({"prompt": p["prompt"], "completion": p["rejected"], "label": False})
    return rows


def polarity_pairs(n: int = 64, seed: int = 0) -> list[dict[str, Any]]:
    """Pairs whose preferred answer is named in the prompt ("say good" / "say bad").

    Each answer is chosen in half of the pairs and rejected in the other half, so a scorer
    that ignores the prompt is at exactly 50%: a reward model must read the context.
    """
    rng = random.Random(seed)
    words = "the quick brown fox jumps over lazy dog sea blue light sky".split()
    rows = []
    for i in range(n):
        want, other = ("good", "bad") if i % 2 == 0 else ("bad", "good")
        lead = " ".join(rng.choice(words) for _ in range(2))
        rows.append({"prompt": f"{lead}: say {want}.", "chosen": f" {want}",
                     "rejected": f" {other}"})
    return rows


def sft_rows(kind: str) -> list[dict[str, Any]]:
    """Addition as SFT data: prompt/completion rows or chat messages."""
    rows = []
    for p in addition_pairs():
        if kind == "messages":
            rows.append({"messages": [{"role": "user", "content": p["prompt"]},
                                      {"role": "assistant", "content": p["chosen"].strip()}]})
        else:
            rows.append({"prompt": p["prompt"], "completion": p["chosen"]})
    return rows


@pytest.fixture(scope="session")
def unpaired_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "unpaired.jsonl", unpaired_rows())


@pytest.fixture(scope="session")
def polarity_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "polarity.jsonl", polarity_pairs())


@pytest.fixture(scope="session")
def sft_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "sft.jsonl", sft_rows("prompt"))


@pytest.fixture(scope="session")
def chat_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "chat.jsonl", sft_rows("messages"))


def make_config(algo: str, model: Path, dataset: Path, output_dir: Path, *,
                ref_model: Path | None = None, lora: bool = False, max_length: int = 1024,
                batch_size: int = 8, **algo_fields: Any) -> tuple[Any, Any]:
    """A RunConfig and the validated data, as `align rlhf --algo ALGO` would build them."""
    from align.config import DataArgs, LoraArgs, ModelArgs, RunConfig, TrainArgs
    from align.data import load_valid
    from align.options import fill_learning_rates
    from align.registry import get_algo

    spec = get_algo(algo)
    cfg = RunConfig(algo_name=algo,
                    model=ModelArgs(model=str(model), ref_model=str(ref_model) if ref_model
                                    else None),
                    lora=LoraArgs(lora=lora), data=DataArgs(dataset=str(dataset),
                                                            max_length=max_length),
                    train=TrainArgs(output_dir=str(output_dir), max_steps=1,
                                    per_device_train_batch_size=batch_size, report_to="none"),
                    algo=spec.config_cls(**algo_fields))
    fill_learning_rates(cfg, spec)  # the registry's default, as align.options.resolve gives it
    return cfg, load_valid(dataset, spec.data_format)


@pytest.fixture(scope="session")
def ref_lm(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> Path:
    """A second tiny LM (another seed): a reference that differs from the policy."""
    from align.tiny import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("ref_lm"), tiny_tokenizer, seed=1)
