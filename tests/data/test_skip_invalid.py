"""--skip-invalid: train on the valid records, say what was dropped, keep it in
OUTPUT_DIR/skipped.jsonl, refuse above --max-invalid-frac."""

from __future__ import annotations

import json

import pytest

from align.data import DataValidationError, load_valid
from align.metrics import read_metrics
from tests.conftest import addition_pairs, run_cli, write_jsonl


def _pairs_with_bad(tmp_path, n_bad):
    rows = addition_pairs(40)
    for i in range(n_bad):
        rows[3 + 5 * i] = {"prompt": rows[3 + 5 * i]["prompt"], "chosen": " 4", "rejected": " 4"}
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if n_bad:
        text += "{not json\n"  # an unreadable line counts too
    p = tmp_path / "pairs.jsonl"
    p.write_text(text)
    return p


def test_strict_by_default(tmp_path):
    with pytest.raises(DataValidationError, match="identical"):
        load_valid(_pairs_with_bad(tmp_path, 1), "pairwise")


def test_skip_invalid_keeps_the_valid_records(tmp_path):
    r = load_valid(_pairs_with_bad(tmp_path, 1), "pairwise", skip_invalid=True)
    assert len(r.rows) == 39 and r.records == 41 and r.bad_records == 2
    skipped = [json.loads(line) for line in r.skipped.read_text().splitlines()]
    assert [s["position"] for s in skipped] == ["line 4", "line 41"]
    assert skipped[0]["record"]["chosen"] == " 4" and "identical" in skipped[0]["errors"][0]
    assert skipped[1]["record"] is None


def test_too_many_invalid_records_are_refused(tmp_path):
    p = _pairs_with_bad(tmp_path, 3)  # 4 of 41 bad: 9.8%
    with pytest.raises(DataValidationError, match=r"4 of 41 records \(9.8%\) are invalid, more "
                                                  r"than --max-invalid-frac 0.05"):
        load_valid(p, "pairwise", skip_invalid=True)
    assert len(load_valid(p, "pairwise", skip_invalid=True, max_invalid_frac=0.1).rows) == 37


def test_a_file_level_error_is_never_skipped(tmp_path):
    p = write_jsonl(tmp_path / "s.jsonl", [{"conversations": [{"from": "human", "value": "q"}]}])
    with pytest.raises(DataValidationError, match="ShareGPT"):
        load_valid(p, "sft", skip_invalid=True, max_invalid_frac=1.0)


def test_training_with_skip_invalid_writes_skipped_jsonl(tmp_path, capsys, tiny_lm):
    p = _pairs_with_bad(tmp_path, 1)
    out = tmp_path / "run"
    args = ["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", p, "--output-dir", out,
            "--max-steps", "2", "--report-to", "none", "--save-steps", "1000"]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "line 4" in err
    code, _, err = run_cli(args + ["--skip-invalid"], capsys)
    assert code == 0, err
    assert "--skip-invalid: dropped 2 of 41 records (4.9%)" in err
    assert "line 4, field 'rejected': chosen and rejected are identical" in err
    lines = (out / "skipped.jsonl").read_text().splitlines()
    assert [json.loads(line)["position"] for line in lines] == ["line 4", "line 41"]
    assert len([r for r in read_metrics(out) if "loss" in r]) == 2


def test_validate_says_what_skip_invalid_would_drop(tmp_path, capsys):
    p = _pairs_with_bad(tmp_path, 1)
    code, out, err = run_cli(["data", "validate", p, "--algo", "dpo", "--skip-invalid"], capsys)
    assert code == 0 and out.startswith("OK") and "would drop 2 of 41 records" in err
