"""align plot: panels chosen from whatever a run logged; a PNG on disk; clear errors."""

from __future__ import annotations

import json
import math

import pytest

from align.errors import AlignError
from align.plot import choose_panels
from tests.conftest import run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write(path, rows):
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _ppo_rows():
    rows = [{"step": 0, "time": 0.0, "eval/reward": -1.0, "eval/kl": 0.0}]
    for s in range(1, 9):
        rows.append({"step": s, "time": float(s), "reward/raw": 0.1 * s, "objective/kl": 0.2 * s,
                     "rollout/response_len": 6.0, "loss/policy": -0.01, "loss/value": 0.1,
                     "policy/entropy": 2.0 - 0.1 * s, "policy/clipfrac": 0.05,
                     "loss/nan_here": "nan"})
    rows.append({"step": 8, "time": 9.0, "health/mute": 1.0})
    return rows


def test_ppo_run_gets_a_png_with_the_main_panels(tmp_path, capsys):
    run = _write(tmp_path / "ppo", _ppo_rows())
    code, out, err = run_cli(["plot", run], capsys)
    assert code == 0, err
    png = run / "metrics.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and "wrote" in out
    titles = [t for t, _ in choose_panels({k for r in _ppo_rows() for k in r})]
    assert titles[:3] == ["reward", "KL to reference (nats)", "response length (tokens)"]
    assert "entropy" in titles and "losses" in titles


def test_dpo_run_and_chosen_metrics(tmp_path, capsys):
    rows = [{"step": s, "loss": 0.69 - 0.01 * s, "rewards/margins": 0.1 * s,
             "rewards/accuracies": 0.5, "logps/chosen": -20.0} for s in range(1, 6)]
    run = _write(tmp_path / "dpo", rows)
    titles = [t for t, _ in choose_panels({k for r in rows for k in r})]
    assert titles == ["reward margin / accuracy", "losses", "log-probs"]
    code, _, err = run_cli(["plot", run, "--metrics", "loss,rewards/margins", "-o",
                            tmp_path / "x" / "dpo.png"], capsys)
    assert code == 0, err
    assert (tmp_path / "x" / "dpo.png").read_bytes()[:8] == PNG_MAGIC


def test_unknown_metric_and_missing_run_are_clear_errors(tmp_path, capsys):
    run = _write(tmp_path / "r", [{"step": 1, "loss": 1.0}])
    code, _, err = run_cli(["plot", run, "--metrics", "nope"], capsys)
    assert code == 2 and "nope" in err and "loss" in err
    code, _, err = run_cli(["plot", tmp_path / "empty"], capsys)
    assert code == 2 and "metrics.jsonl" in err
    with pytest.raises(AlignError, match="no numeric"):
        from align.plot import plot_run

        plot_run(_write(tmp_path / "s", [{"step": 1, "note": "x", "v": math.inf}]))
