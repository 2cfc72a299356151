"""CPO, SimPO and ORPO end to end through the CLI (TRL's experimental trainers)."""

from __future__ import annotations

import pytest

from align.metrics import read_metrics
from tests.algos.conftest import FAST, assert_loss_falls, mean
from tests.conftest import run_cli


@pytest.mark.parametrize("algo,extra", [
    ("cpo", []),
    ("simpo", []),
    ("simpo", ["--cpo-alpha", "0"]),  # the original SimPO: no NLL term
    ("orpo", []),
])
def test_reference_free_losses_fall_and_model_loads_back(tmp_path, capsys, tiny_lm, pairs_file,
                                                          algo, extra):
    from transformers import AutoModelForCausalLM

    out = tmp_path / algo
    code, _, err = run_cli(["rlhf", "--algo", algo, "--model", tiny_lm, "--dataset", pairs_file,
                            "--output-dir", out, "--max-steps", "24", "--learning-rate", "3e-3",
                            *extra, *FAST], capsys)
    assert code == 0, err
    assert_loss_falls(out)
    if extra:
        # Without the NLL term the fall can only come from the preference term: margins grow.
        margins = [r["rewards/margins"] for r in read_metrics(out) if "rewards/margins" in r]
        assert mean(margins[-4:]) > mean(margins[:4]) + 0.2, margins
    model = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True)
    assert model.config.model_type == "qwen2"


def test_cpo_rejects_label_smoothing_with_ipo(capsys, tiny_lm, pairs_file):
    code, _, err = run_cli(["rlhf", "--algo", "cpo", "--model", tiny_lm, "--dataset", pairs_file,
                            "--loss-type", "ipo", "--label-smoothing", "0.1", "--dry-run"], capsys)
    assert code == 2 and "only by --loss-type sigmoid" in err
