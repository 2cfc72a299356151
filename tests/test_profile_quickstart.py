"""scripts/profile_quickstart.py: py-spy samples are put in the right stage and phase."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import profile_quickstart as pq  # noqa: E402

TOP = "run (align/quickstart/pipeline.py:488);_run (align/quickstart/pipeline.py:526)"
SFT = (f"{TOP};prepare_policy (align/quickstart/pipeline.py:281);"
       "train (align/quickstart/pipeline.py:138);execute (align/runner.py:292);"
       "run (align/algos/sft.py:195)")
DPO = (f"{TOP};run_algos (align/quickstart/pipeline.py:425);"
       "algo_stage (align/quickstart/pipeline.py:345);train (align/quickstart/pipeline.py:138);"
       "run (align/algos/dpo.py:115)")


def test_samples_go_to_their_stage_and_phase(tmp_path):
    raw = tmp_path / "spy.txt"
    raw.write_text("\n".join([
        f"{SFT};Trainer.training_step (transformers/trainer.py:2126);"
        "Accelerator.backward (accelerate/accelerator.py:2861) 100",
        f"{SFT};build_trainer (align/algos/sft.py:180);"
        "SFTTrainer._prepare_dataset (trl/trainer/sft_trainer.py:1228) 25",
        f"{DPO};Trainer.training_step (transformers/trainer.py:2090);"
        "DPOTrainer.compute_loss (trl/trainer/dpo_trainer.py:1) 50",
        f"{TOP};run_algos (align/quickstart/pipeline.py:425);"
        "algo_stage (align/quickstart/pipeline.py:352);curve (align/quickstart/pipeline.py:250);"
        "evaluate (align/quickstart/evaluate.py:96) 10",
        f"{TOP};prepare_policy (align/quickstart/pipeline.py:279);"
        "build_base (align/quickstart/pipeline.py:146);_find_and_load (<frozen>:1) 5",
        "Thread._bootstrap (threading.py:1);TMonitor.run (tqdm/_monitor.py:1);"
        "Event.wait (threading.py:1) 500",  # a waiting thread: left out
    ]) + "\n", encoding="utf-8")
    text = pq.summarise(raw, rate=50.0)
    lines = text.splitlines()
    assert lines[0] == "3.8 s sampled in all"  # (100 + 25 + 50 + 10 + 5) / 50
    sft = next(line for line in lines if line.startswith("sft "))
    assert "2.5 s" in sft and "step: backward 2.0" in sft and "trainer: tokenize data 0.5" in sft
    dpo = next(line for line in lines if line.startswith("dpo "))
    assert "1.0 s" in dpo and "step: forward and loss 1.0" in dpo
    assert any(line.startswith("algorithms: evaluation") and "curve checkpoints 0.2" in line
               for line in lines)
    assert any(line.startswith("base model") and "import 0.1" in line for line in lines)
    assert lines[-1].startswith("training steps and sampling 3.0 s; the rest 0.8 s")
