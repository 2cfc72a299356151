"""Non-finite values stop a run (exit 3) and no model with NaN/inf weights is ever saved: the
issue's reproduction (DPO at --learning-rate 1e12 without gradient clipping), with rollback,
SFT (no health flags) and PPO."""

from __future__ import annotations

from pathlib import Path

import pytest

from align.checkpoints import scan
from align.metrics import read_metrics
from tests.conftest import run_cli
from tests.test_resume_faults import error_line

BLOW_UP = ["--learning-rate", "1e12", "--max-grad-norm", "0", "--max-steps", "6",
           "--save-steps", "1", "--per-device-train-batch-size", "8", "--report-to", "none"]


def assert_no_nonfinite_weights(out: Path) -> None:
    import torch
    from safetensors.torch import load_file

    assert not (out / "model.safetensors").exists() and not (out / "adapter_model.safetensors"
                                                              ).exists()
    for c in scan(out)[0]:
        for f in c.path.rglob("*.safetensors"):
            assert all(torch.isfinite(t).all() for t in load_file(str(f)).values()), f


@pytest.mark.parametrize("on_collapse", ["warn", "stop"])
def test_dpo_blowing_up_stops_with_nan_and_saves_no_broken_model(tmp_path, capsys, tiny_lm,
                                                                pairs_file, on_collapse):
    out = tmp_path / "dpo"
    code, _, err = run_cli(["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset",
                            pairs_file, "--output-dir", out, "--on-collapse", on_collapse,
                            *BLOW_UP], capsys)
    assert code == 3, err[-2000:]
    line = error_line(err)
    assert "NaN" in line and "No model was saved" in line and "--learning-rate" in line, line
    losses = [r["loss"] for r in read_metrics(out) if "loss" in r]
    assert "nan" in losses and 0.0 not in losses  # TRL's NaN filter is off: no fake 0.0
    assert "[health] step" in err and ": nan:" in err
    assert_no_nonfinite_weights(out)
    assert list(out.glob("nan-checkpoint-*"))  # the checkpoint that produced the NaN, aside


def test_dpo_nan_with_rollback_finds_no_sound_checkpoint_and_stops(tmp_path, capsys, tiny_lm,
                                                                   pairs_file):
    """The checkpoint saved before the NaN produced it: it is set aside, so rollback has
    nothing sound to return to and stops rather than loop on broken weights."""
    out = tmp_path / "dpo"
    code, _, err = run_cli(["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset",
                            pairs_file, "--output-dir", out, "--on-collapse", "rollback",
                            "--max-rollbacks", "2", "--lr-scheduler-type", "constant",
                            "--warmup-ratio", "0", *BLOW_UP], capsys)
    assert code == 3, err[-2000:]
    assert "NaN" in error_line(err)
    assert "set checkpoint-1 aside as nan-checkpoint-1" in err and "stopping instead" in err
    assert_no_nonfinite_weights(out)


def test_sft_without_health_flags_still_saves_no_nan_model(tmp_path, capsys, tiny_lm, sft_file):
    out = tmp_path / "sft"
    code, _, err = run_cli(["sft", "--model", tiny_lm, "--dataset", sft_file, "--output-dir",
                            out, *BLOW_UP], capsys)
    assert code == 3, err[-2000:]
    assert "NaN" in error_line(err)
    assert_no_nonfinite_weights(out)


def test_ppo_blowing_up_stops_with_nan_and_saves_nothing_broken(tmp_path, capsys, tiny_lm,
                                                                tiny_rm):
    from tests.conftest import write_jsonl
    from tests.ppo.conftest import chat_prompts

    data = write_jsonl(tmp_path / "p.jsonl", chat_prompts(16, 0))
    out = tmp_path / "ppo"
    code, _, err = run_cli(["rlhf", "--algo", "ppo", "--model", tiny_lm, "--reward-model",
                            tiny_rm, "--dataset", data, "--output-dir", out,
                            "--rollout-batch-size", "8", "--max-new-tokens", "6",
                            "--per-device-train-batch-size", "8", "--actor-lr", "1e12",
                            "--critic-lr", "1e12", "--max-grad-norm", "0", "--max-steps", "4",
                            "--save-steps", "1", "--report-to", "none"], capsys)
    assert code == 3, err[-2000:]
    line = error_line(err)
    assert "NaN" in line and "--actor-lr" in line, line
    assert_no_nonfinite_weights(out)
