"""CI's real-model smoke: a few steps each of dpo, rm -> ppo and grpo on SmolLM2-135M-Instruct.

Not a measure of alignment (tests/real/test_offline.py and test_online.py are): it checks,
within CI's budget, that the real model's chat template, padding and EOS handling go through
every stage of a run, and that what is saved loads back and answers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_jsonl
from tests.real import harness, task

pytestmark = pytest.mark.real_smoke

FAST = ["--lr-scheduler-type", "constant", "--warmup-ratio", "0", "--save-steps", "1000",
        "--report-to", "none", "--logging-steps", "1", "--seed", "0"]
RAMBLE = ("That is a great question, and there is a lot to say about it. First of all, it is "
          "important to understand the background. There are many factors to consider")


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("smoke")
    facts = task.FACTS[:8]
    pairs = [{"prompt": task.chat(q), "chosen": [{"role": "assistant", "content": a}],
              "rejected": [{"role": "assistant", "content": RAMBLE}]} for q, a in facts]
    return {"pairwise": write_jsonl(root / "pairs.jsonl", pairs),
            "prompts": write_jsonl(root / "prompts.jsonl",
                                   [{"prompt": task.chat(q)} for q, _ in facts])}


def answers_after_loading(out: Path, base: Path) -> str:
    """Load the saved policy back, check it changed, and answer one question greedily."""
    import torch

    model, tok = harness.load_policy(out)
    start, _ = harness.load_policy(base)
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), start.parameters())), \
        f"{out}: saved weights equal the base model's"
    answer = harness.greedy(model, tok, ["What is the capital of France?"], 16).texts[0]
    assert answer.strip(), f"{out}: empty answer after loading back"
    return answer


def test_dpo_from_the_gguf_file_saves_loads_and_answers(real_model, smoke_data, tmp_path,
                                                       capsys):
    """--model FILE.gguf: dequantized on load, trained, saved as a plain HF model."""
    gguf = sorted((real_model / "gguf").glob("*.gguf"))
    assert gguf, f"no GGUF file in {real_model / 'gguf'}: run scripts/get_smollm2.py again"
    out = tmp_path / "dpo"
    harness.train(["rlhf", "--algo", "dpo", "--model", gguf[0], "--dataset",
                   smoke_data["pairwise"], "--output-dir", out, "--max-steps", "2",
                   "--per-device-train-batch-size", "2", "--learning-rate", "1e-5",
                   "--max-length", "128", *FAST], capsys)
    answers_after_loading(out, real_model)


def test_rm_then_ppo_saves_loads_and_answers(real_model, smoke_data, tmp_path, capsys):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rm = tmp_path / "rm"
    harness.train(["rlhf", "--algo", "rm", "--model", real_model, "--dataset",
                   smoke_data["pairwise"], "--output-dir", rm, "--max-steps", "2",
                   "--per-device-train-batch-size", "2", "--learning-rate", "1e-5",
                   "--max-length", "128", *FAST], capsys)
    scorer = AutoModelForSequenceClassification.from_pretrained(rm, use_safetensors=True)
    tok = AutoTokenizer.from_pretrained(rm)
    text = tok.apply_chat_template(task.chat("Who wrote Hamlet?") + [
        {"role": "assistant", "content": "William Shakespeare."}], tokenize=False)
    with torch.no_grad():
        score = scorer(**tok(text, return_tensors="pt")).logits
    assert score.shape == (1, 1) and torch.isfinite(score).all()

    out = tmp_path / "ppo"
    log, _ = harness.train(["rlhf", "--algo", "ppo", "--model", real_model, "--reward-model",
                            rm, "--dataset", smoke_data["prompts"], "--output-dir", out,
                            "--max-steps", "2", "--rollout-batch-size", "4",
                            "--per-device-train-batch-size", "4", "--max-new-tokens", "24",
                            *FAST], capsys)
    assert "step 2: reward" in log
    answers_after_loading(out, real_model)


def test_grpo_saves_loads_and_answers(real_model, smoke_data, tmp_path, capsys):
    out = tmp_path / "grpo"
    harness.train(["rlhf", "--algo", "grpo", "--model", real_model, "--dataset",
                   smoke_data["prompts"], "--output-dir", out, "--max-steps", "2",
                   "--per-device-train-batch-size", "4", "--num-generations", "4",
                   "--max-completion-length", "24", "--reward-fn",
                   f"{Path(__file__).parent / 'rewards.py'}:word_variety", "--learning-rate",
                   "1e-5", *FAST], capsys)
    answers_after_loading(out, real_model)
