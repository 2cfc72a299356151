"""KTO end to end, its weight-balance warning, and --resume (tested once, here)."""

from __future__ import annotations

import json

import pytest

from align.algos.kto import RATIO_HIGH, RATIO_LOW, weight_advice
from align.metrics import read_metrics
from tests.algos.conftest import FAST, assert_loss_falls, unpaired_rows
from tests.conftest import run_cli, write_jsonl


def test_kto_loss_falls_and_model_loads_back(tmp_path, capsys, tiny_lm, unpaired_file):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "kto"
    code, _, err = run_cli(["rlhf", "--algo", "kto", "--model", tiny_lm, "--dataset",
                            unpaired_file, "--output-dir", out, "--max-steps", "24",
                            "--learning-rate", "5e-3", "--beta", "1.0", *FAST], capsys)
    assert code == 0, err
    assert "KTO weight balance" not in err  # 64 desirable, 64 undesirable: ratio 1
    assert_loss_falls(out, min_drop=0.03)
    assert AutoModelForCausalLM.from_pretrained(out).config.model_type == "qwen2"


def _ratio(n_d, n_u, w_d, w_u):
    return w_d * n_d / (w_u * n_u)


def test_weight_advice_in_band_is_silent():
    assert weight_advice(10, 10, 1.0, 1.0) is None
    assert weight_advice(12, 10, 1.0, 1.0) is None  # ratio 1.2


@pytest.mark.parametrize("n_d,n_u,w_d,w_u", [(10, 100, 1.0, 1.0), (100, 10, 1.0, 1.0),
                                             (50, 50, 1.0, 3.0), (30, 10, 0.2, 1.0)])
def test_weight_advice_names_a_weight_that_lands_in_band(n_d, n_u, w_d, w_u):
    text = weight_advice(n_d, n_u, w_d, w_u)
    assert text is not None and "outside [1, 4/3]" in text
    low = _ratio(n_d, n_u, w_d, w_u) < RATIO_LOW
    first = "raise --desirable-weight" if low else "raise --undesirable-weight"
    assert text.split("recommends: ", 1)[1].startswith(first), text
    # Every suggested value puts the ratio back in [1, 4/3].
    for flag in ("desirable", "undesirable"):
        part = text.split(f"--{flag}-weight from ")[1]
        value = float(part.split(" to ")[1].split(" ")[0])
        ratio = _ratio(n_d, n_u, value, w_u) if flag == "desirable" else \
            _ratio(n_d, n_u, w_d, value)
        assert RATIO_LOW <= ratio <= RATIO_HIGH, (flag, value, ratio)


def test_weight_advice_one_sided_data():
    assert "every example is desirable" in weight_advice(5, 0, 1.0, 1.0)


def test_kto_warns_on_imbalanced_data_before_training(tmp_path, capsys, tiny_lm):
    rows = unpaired_rows()
    rows = [r for r in rows if r["label"]][:8] + [r for r in rows if not r["label"]][:32]
    data = write_jsonl(tmp_path / "imbalanced.jsonl", rows)
    code, _, err = run_cli(["rlhf", "--algo", "kto", "--model", tiny_lm, "--dataset", data,
                            "--output-dir", tmp_path / "out", "--max-steps", "1", *FAST], capsys)
    assert code == 0, err
    # 8 desirable vs 32 undesirable: ratio 0.25 -> raise --desirable-weight to 4.67 (in [4, 5.33])
    assert "= 0.250 is outside [1, 4/3]" in err
    assert "raise --desirable-weight from 1 to 4.67 (anything in [4, 5.33])" in err
    assert "lower --undesirable-weight from 1 to 0.214 (anything in [0.188, 0.25])" in err


def test_kto_needs_batches_of_two(tmp_path, capsys, tiny_lm, unpaired_file):
    code, _, err = run_cli(["rlhf", "--algo", "kto", "--model", tiny_lm, "--dataset",
                            unpaired_file, "--output-dir", tmp_path / "o", "--max-steps", "1",
                            "--per-device-train-batch-size", "1"], capsys)
    assert code == 2 and "at least 2" in err


def test_resume_continues_from_the_latest_checkpoint(tmp_path, capsys, tiny_lm, unpaired_file):
    out = tmp_path / "kto"
    common = ["rlhf", "--algo", "kto", "--model", tiny_lm, "--dataset", unpaired_file,
              "--output-dir", out, "--learning-rate", "1e-3", "--per-device-train-batch-size",
              "8", "--save-steps", "5", "--report-to", "none"]
    code, _, err = run_cli(common + ["--max-steps", "10"], capsys)
    assert code == 0, err
    assert (out / "checkpoint-10").is_dir()
    code, _, err = run_cli(common + ["--max-steps", "15"], capsys)
    assert code == 2 and "--resume" in err  # never mixes a new run into an old one
    code, _, err = run_cli(common + ["--max-steps", "15", "--resume"], capsys)
    assert code == 2 and "--max-steps 10 -> 15" in err  # a longer schedule is a change...
    code, out_text, err = run_cli(common + ["--max-steps", "15", "--resume",
                                            "--resume-allow-change", "max-steps"], capsys)
    assert code == 0, err  # ...that the user may make on purpose
    state = json.loads((out / "checkpoint-15" / "trainer_state.json").read_text())
    assert state["global_step"] == 15
    steps = [r["step"] for r in read_metrics(out) if "loss" in r]
    assert steps == list(range(1, 16)), steps  # 1..10 from the first run, 11..15 resumed
    summaries = [r["step"] for r in read_metrics(out) if "train_runtime" in r]
    assert summaries == [15]  # the interrupted run's end-of-training row is gone


def test_kto_loss_type_is_checked(capsys, tiny_lm, unpaired_file):
    code, _, err = run_cli(["rlhf", "--algo", "kto", "--model", tiny_lm, "--dataset",
                            unpaired_file, "--loss-type", "sigmoid", "--dry-run"], capsys)
    assert code == 2 and "choose from [kto, apo_zero_unpaired]" in err


def test_precomputed_reference_logps_are_found_by_a_run_into_another_dir(
        tmp_path, capsys, tiny_lm, unpaired_file, monkeypatch):
    """KTO's reference cache is keyed like DPO's (align.algos.common.ref_cache_key): the
    second run, into another output directory, reads the first's log-probs back and logs
    the same losses."""
    monkeypatch.setenv("ALIGN_CACHE", str(tmp_path / "cache"))
    args = ["rlhf", "--algo", "kto", "--model", tiny_lm, "--dataset", unpaired_file,
            "--max-steps", "2", "--save-steps", "100", "--report-to", "none",
            "--precompute-ref-logps"]
    logs, losses = [], []
    for run in ("a", "b"):
        code, out, err = run_cli(args + ["--output-dir", tmp_path / run], capsys)
        assert code == 0, err
        logs.append(out + err)
        losses.append([r["loss"] for r in read_metrics(tmp_path / run) if "loss" in r])
    assert "Computing reference log probs" in logs[0]
    assert "Computing reference log probs" not in logs[1]
    assert losses[0] and losses[0] == losses[1]
