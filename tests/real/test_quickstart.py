"""`align quickstart --model DIR` on SmolLM2-135M-Instruct: the pipeline with a real policy.

The quickstart's gold reward (pleasant adjectives, on topic, brief) is not what SmolLM2 was
tuned for, so this checks that the whole pipeline runs on a real chat model with the real-model
recipes (REAL_RECIPES in align/quickstart/pipeline.py) and reports sensible numbers; the
alignment gains on a real model are measured by test_offline.py and test_online.py.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import run_cli
from tests.real import harness

pytestmark = pytest.mark.real


def test_quickstart_runs_on_the_real_model(real_model, tmp_path, capsys):
    out = tmp_path / "qs"
    start = time.time()
    code, stdout, err = run_cli(["quickstart", "--model", real_model, "--out", out,
                                 "--algos", "dpo", "--scale", "0.25"], capsys)
    assert code == 0, err[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    dpo, sft = summary["algos"]["dpo"], summary["sft"]
    harness.append_row({"name": "quickstart --model (dpo)", "steps": None,
                     "wall_s": round(time.time() - start, 1),
                     "quickstart_gold_before": sft["gold_reward"],
                     "quickstart_gold_after": dpo["gold_reward"],
                     "rm_accuracy": summary["reward_model"]["accuracy"]})
    # Measured (scale 0.25, 10 min on 2 cores): SmolLM2's answers to "Describe the sea." sit at
    # the quickstart gold's floor (-1.00: they seldom name the topic with a list of adjectives),
    # so the labels are nearly random (62% agree with gold) and the reward model ranks held-out
    # pairs at chance (0.47); dpo -0.98. The quickstart's task fits its tiny model; a real
    # model's alignment is measured by test_offline.py and test_online.py.
    import math

    assert 0.0 <= summary["reward_model"]["accuracy"] <= 1.0
    assert math.isfinite(dpo["gold_reward"]) and not dpo["collapsed"], dpo
    assert "algorithm" in stdout and "sft (start)" in stdout
