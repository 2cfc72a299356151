"""align plot: panels chosen from whatever runs logged, one scale per axis, EMA smoothing over
faint raw curves, several runs overlaid, short runs as a table; a PNG on disk; clear errors."""

from __future__ import annotations

import json
import math

import pytest

from align.errors import AlignError
from align.plot import (Run, choose_panels, draw, ema, load_runs, plot_runs, split_by_scale,
                        table_text)
from tests.conftest import run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write(path, rows):
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _ppo_rows(n=9):
    rows = [{"step": 0, "time": 0.0, "eval/reward": -1.0, "eval/kl": 0.0}]
    for s in range(1, n):
        rows.append({"step": s, "time": float(s), "reward/raw": 0.1 * s,
                     "reward/normalized": 0.1 * s, "objective/kl": 0.2 * s,
                     "rollout/response_len": 6.0, "loss/policy": -0.01 * s, "loss/value": 3.0 / s,
                     "policy/entropy": 2.0 - 0.1 * s, "policy/clipfrac": 0.05,
                     "lr/actor": 1e-6, "lr/critic": 1e-5, "loss/nan_here": "nan"})
    rows.append({"step": n - 1, "time": 9.0, "health/mute": 1.0})
    return rows


def _dpo_rows(n=12, seed=0):
    return [{"step": s, "loss": 0.69 - 0.01 * s + 0.02 * ((s * 7 + seed) % 3),
             "rewards/margins": 0.001 * s, "rewards/accuracies": 0.5 + 0.03 * s,
             "logps/chosen": -20.0 - 0.1 * s, "logps/rejected": -21.0 - 0.3 * s,
             "learning_rate": 1e-5} for s in range(1, n)]


def _titles(rows):
    keys = {k for r in rows for k in r if k not in ("step", "time")}
    values = {k: [r[k] for r in rows if isinstance(r.get(k), float)] for k in keys}
    return [t for t, _ in choose_panels(keys, values=values)]


def test_ema_is_tensorboards_debiased_average():
    # w = 0.5: s1 = 0.5 / 0.5 = 1; s2 = (0.25 + 1) / 0.75 = 1.6667; s3 = (0.625 + 1.5) / 0.875
    assert ema([1.0, 2.0, 3.0], 0.5) == pytest.approx([1.0, 5 / 3, 2.125 / 0.875])
    assert ema([4.0, 4.0, 4.0], 0.9) == pytest.approx([4.0, 4.0, 4.0])  # no pull towards 0
    assert ema([1.0, 5.0], 0.0) == [1.0, 5.0]


def test_series_of_different_scales_get_their_own_axes():
    values = {"grad/actor_norm": [0.4, 0.5], "grad/critic_norm": [40.0, 55.0],
              "grad_norm": [0.6, 0.3], "zeros": [0.0, 0.0]}
    groups = split_by_scale(list(values), values)
    assert ["grad/critic_norm"] in groups
    assert any({"grad/actor_norm", "grad_norm"} <= set(g) for g in groups)
    assert sum(len(g) for g in groups) == 4


def test_ppo_panels_one_quantity_each(tmp_path):
    titles = _titles(_ppo_rows())
    assert titles[:3] == ["reward", "KL to reference (nats)", "response length (tokens)"]
    # policy and value loss, actor and critic learning rate: never one axis
    assert "policy loss" in titles and "value loss" in titles
    assert "actor learning rate" in titles and "critic learning rate" in titles
    # reward/normalized equal to reward/raw (no --reward-norm) is not drawn twice
    assert "reward, normalised" not in titles


def test_dpo_margins_and_accuracies_on_separate_axes():
    titles = _titles(_dpo_rows())
    assert "reward margin (chosen - rejected)" in titles and "preference accuracy" in titles
    assert "learning rate" in titles


def test_ppo_run_gets_a_png_with_smoothed_and_faint_raw_curves(tmp_path, capsys):
    run = _write(tmp_path / "ppo", _ppo_rows())
    code, out, err = run_cli(["plot", run], capsys)
    assert code == 0, err
    png = run / "metrics.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and "wrote" in out
    import matplotlib.pyplot as plt

    runs = load_runs([run])
    keys = runs[0].keys()
    panels = choose_panels(keys, values={k: [v for _, v in runs[0].series(k)] for k in keys})
    fig = draw(plt, runs, panels, keys, 0.6)
    reward_ax = fig.axes[0]
    lines = reward_ax.get_lines()
    # the raw curve faint, the EMA over it, the alarm's red line at step 8
    alphas = sorted(line.get_alpha() or 1.0 for line in lines)
    assert alphas[0] < 0.5 and alphas[-1] == 1.0
    raw = [ln for ln in lines if (ln.get_alpha() or 1.0) < 0.5 and len(ln.get_xdata()) > 2][0]
    smooth = [ln for ln in lines if ln.get_label() == "reward/raw"][0]
    assert list(smooth.get_ydata()) == pytest.approx(ema(list(raw.get_ydata()), 0.6))
    assert any(list(ln.get_xdata()) == [8, 8] for ln in lines)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert len(titles) == len(set(titles)) == len(panels)
    plt.close(fig)


def test_several_runs_are_overlaid_in_one_figure(tmp_path, capsys):
    a = _write(tmp_path / "runs" / "dpo-a", _dpo_rows())
    b = _write(tmp_path / "runs" / "dpo-b", _dpo_rows(seed=1)[:8])
    code, out, err = run_cli(["plot", a, b], capsys)
    assert code == 0, err
    assert (tmp_path / "runs" / "compare.png").read_bytes()[:8] == PNG_MAGIC
    import matplotlib.pyplot as plt

    runs = load_runs([a, b])
    keys = set().union(*(r.keys() for r in runs))
    fig = draw(plt, runs, choose_panels(keys), keys, 0.6)
    labels = {t.get_text() for ax in fig.axes if ax.get_legend()
              for t in ax.get_legend().get_texts()}
    assert {"dpo-a: loss", "dpo-b: loss"} <= labels
    plt.close(fig)


def test_short_run_is_a_table(tmp_path, capsys):
    rows = [{"step": 1, "loss": 0.69, "rewards/margins": 0.0},
            {"step": 2, "loss": 0.68, "rewards/margins": 0.0123}]
    run = _write(tmp_path / "short", rows)
    code, out, err = run_cli(["plot", run], capsys)
    assert code == 0, err
    assert "step 1" in out and "step 2" in out and "0.0123" in out and "0.68" in out
    assert (run / "metrics.png").read_bytes()[:8] == PNG_MAGIC
    text = table_text([Run("a", rows), Run("b", rows[:1])], ["loss"])
    assert text.splitlines()[2].split() == ["loss", "0.68", "0.69"]  # last value per run


def test_metrics_flag_and_output_path(tmp_path, capsys):
    run = _write(tmp_path / "dpo", _dpo_rows())
    code, _, err = run_cli(["plot", run, "--metrics", "loss,rewards/margins", "-o",
                            tmp_path / "x" / "dpo.png", "--smoothing", "0"], capsys)
    assert code == 0, err
    assert (tmp_path / "x" / "dpo.png").read_bytes()[:8] == PNG_MAGIC


def test_unknown_metric_missing_run_and_bad_smoothing_are_clear_errors(tmp_path, capsys):
    run = _write(tmp_path / "r", [{"step": 1, "loss": 1.0}])
    code, _, err = run_cli(["plot", run, "--metrics", "nope"], capsys)
    assert code == 2 and "nope" in err and "loss" in err
    code, _, err = run_cli(["plot", tmp_path / "empty"], capsys)
    assert code == 2 and "metrics.jsonl" in err
    code, _, err = run_cli(["plot", run, "--smoothing", "1"], capsys)
    assert code == 2 and "--smoothing" in err
    with pytest.raises(AlignError, match="no numeric"):
        plot_runs([_write(tmp_path / "s", [{"step": 1, "note": "x", "v": math.inf}])])


def test_learning_rates_are_drawn_as_scheduled_not_smoothed(tmp_path):
    import matplotlib.pyplot as plt

    rows = [{"step": s, "loss": 1.0 / s, "learning_rate": 1e-3 * (1 - s / 12)}
            for s in range(1, 12)]
    runs = load_runs([_write(tmp_path / "lr", rows)])
    keys = runs[0].keys()
    fig = draw(plt, runs, choose_panels(keys), keys, 0.6)
    (lr_ax,) = [ax for ax in fig.axes if ax.get_title() == "learning rate"]
    (line,) = lr_ax.get_lines()
    assert list(line.get_ydata()) == [r["learning_rate"] for r in rows]
    plt.close(fig)
