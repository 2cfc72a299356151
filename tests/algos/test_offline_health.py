"""The shared health monitor watches DPO-family runs: likelihood displacement on a real run."""

from __future__ import annotations

import json

from tests.conftest import run_cli

ARGS = ["--max-steps", "80", "--learning-rate", "5e-3", "--per-device-train-batch-size", "8",
        "--lr-scheduler-type", "constant", "--warmup-ratio", "0", "--save-steps", "1000",
        "--report-to", "none", "--logging-steps", "4"]


def test_pure_dpo_displacement_is_detected_and_stop_exits_3(tmp_path, capsys, tiny_lm,
                                                             pairs_file):
    out = tmp_path / "dpo"
    code, _, err = run_cli(["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", pairs_file,
                            "--output-dir", out, "--rpo-alpha", "0", "--on-collapse", "stop",
                            *ARGS], capsys)
    assert code == 3, err
    assert "likelihood_displacement" in err and "--rpo-alpha 1.0" in err
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    chosen = [r["logps/chosen"] for r in rows if "logps/chosen" in r]
    margins = [r["rewards/margins"] for r in rows if "rewards/margins" in r]
    assert chosen[-1] < chosen[0] - 5 and margins[-1] > margins[0]  # the run really shows it
    assert (out / "model.safetensors").exists()  # saved before stopping


def test_rpo_keeps_chosen_likelihood_up_and_stays_quiet(tmp_path, capsys, tiny_lm, pairs_file):
    out = tmp_path / "rpo"
    code, _, err = run_cli(["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", pairs_file,
                            "--output-dir", out, "--rpo-alpha", "1.0", "--on-collapse", "stop",
                            *ARGS], capsys)
    assert code == 0, err
    assert "likelihood_displacement" not in err
    final = json.loads((out / "final_metrics.json").read_text())
    assert final["collapsed"] is False
