"""The agent task on SmolLM2-135M-Instruct (tests/real/agent_task.py; docs/agents.md): SFT on
tool transcripts with chatml-tools, then GRPO with the `multiply` tool and the exact-answer
rule; GRPO must add at least 0.10 accuracy on the held-out word problems over the SFT model,
and the model without the tool must stay near 0.

Settings (SFT 24 steps at 5e-5; GRPO 12 steps at 1e-5, 2 prompts x 4 rollouts per step) were
chosen on the dev split only (GRPO's 1e-5 over 3e-5; docs/agents.md has the dev table); the
test split is scored here, once per run, as the docs' numbers were: `align generate --tools`
greedy, then scripts/agent_task_data.py's scoring. About 45 minutes on 2 quiet CPU cores,
twice that on busy ones.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.real import harness

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "recipes" / "agents" / "arithmetic.py"
COMMON = ["--lr-scheduler-type", "constant", "--warmup-ratio", "0", "--save-steps", "1000",
          "--report-to", "none", "--seed", "0"]
SFT_FLAGS = ["--chat-template", "chatml-tools", "--max-steps", "24",
             "--per-device-train-batch-size", "8", "--learning-rate", "5e-5", "--logging-steps", "4"]
GRPO_FLAGS = ["--tools", f"{TOOL}:multiply", "--reward-fn", f"{TOOL}:exact_answer",
              "--max-steps", "12", "--learning-rate", "1e-5", "--beta", "0",
              "--num-generations", "4", "--per-device-train-batch-size", "4",
              "--gradient-accumulation-steps", "2", "--max-completion-length", "128",
              "--max-tool-calls", "2", "--logging-steps", "1"]


def _score(model: Path, prompts: Path, out: Path, tools: bool) -> dict:
    """Greedy transcripts of `align generate` (with the tool or without), scored."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import agent_task_data

    argv = ["generate", "--model", model, "--prompts", prompts, "--output", out,
            "--temperature", "0", "--max-new-tokens", "128"]
    if tools:
        argv += ["--tools", f"{TOOL}:multiply", "--max-tool-calls", "2"]
    _, code = harness.run_align(argv)
    assert code == 0, f"align generate failed ({code})"
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    answers = [json.loads(line)["answer"] for line in prompts.read_text().splitlines()]
    return agent_task_data.score_rows(rows, answers)


def test_grpo_with_a_tool_beats_sft_on_held_out_problems(real_model, tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "scripts"))
    import agent_task_data

    files = agent_task_data.write_data(tmp_path / "data")
    _, sft_wall = harness.train(["sft", "--model", real_model, "--dataset", files["sft"],
                                 "--output-dir", tmp_path / "sft", *SFT_FLAGS, *COMMON], capsys)
    _, grpo_wall = harness.train(["rlhf", "--algo", "grpo", "--model", tmp_path / "sft",
                                  "--dataset", files["train"], "--output-dir", tmp_path / "grpo",
                                  *GRPO_FLAGS, *COMMON], capsys)
    metrics = [json.loads(line) for line in (tmp_path / "grpo" / "metrics.jsonl").read_text()
               .splitlines() if "tools/calls_per_episode" in line]
    assert metrics and all(m["tools/calls_per_episode"] > 0.5 for m in metrics)
    sft = _score(tmp_path / "sft", files["test"], tmp_path / "sft.jsonl", tools=True)
    grpo = _score(tmp_path / "grpo", files["test"], tmp_path / "grpo.jsonl", tools=True)
    no_tool = _score(tmp_path / "sft", files["test"], tmp_path / "none.jsonl", tools=False)
    print(json.dumps({"sft": sft, "grpo": grpo, "no_tool": no_tool, "sft_s": round(sft_wall),
                      "grpo_s": round(grpo_wall)}))
    assert no_tool["accuracy"] <= 0.05, no_tool
    assert grpo["accuracy"] >= sft["accuracy"] + 0.10, (sft, grpo)
