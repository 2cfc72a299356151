"""Fixtures of the real-model suite: the SmolLM2 directory, the base model's answers, the data.

The model directory is ``$ALIGN_REAL_MODEL`` or ``~/.cache/align/smollm2-135m-instruct``
(what ``python scripts/get_smollm2.py`` writes); every test here is skipped with that hint
when it is absent. The base model's greedy answers (the rejected side of the training pairs
and the "before" of every comparison) take a few minutes on 2 cores, so they are cached in
``$ALIGN_CACHE/real`` (default ``~/.cache/align/real``) under the model's content hash.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.real import harness

# These runs are a handful of large matmuls, not thousands of tiny ones: use every core
# (the top-level conftest pins tiny-model tests to one thread). Set when a real-model test
# runs, not at import: collecting this folder must not change the default suite's threads.
THREADS = int(os.environ.get("ALIGN_REAL_THREADS") or os.cpu_count() or 1)


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


@pytest.fixture(scope="session")
def base_answers(real_model: Path) -> dict[str, Any]:
    """The base model's greedy answers: 'train' to the fact prompts, 'held_out' and 'dev'
    scored."""
    return harness.base_answers(real_model)


@pytest.fixture(scope="session")
def data(base_answers: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The task's datasets, one file per format (see tests/real/task.py for the design)."""
    return harness.write_data(base_answers, tmp_path_factory.mktemp("real-data"))


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
