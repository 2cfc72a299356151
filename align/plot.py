"""``align plot OUTPUT_DIR``: training curves from any run's metrics.jsonl, as one PNG.

Panels are chosen from the keys a run logged (PPO, GRPO, DPO-family and TRL names alike): a
panel is drawn when at least one of its metrics is present. Steps where a health detector fired
(``health/*`` keys) are marked with a red line on every panel. matplotlib is imported only here,
and only when a plot is asked for.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from align.errors import AlignError
from align.metrics import METRICS_FILE, read_metrics

# (title, metrics): align's own names first, then TRL's for runs on TRL trainers.
PANELS: list[tuple[str, tuple[str, ...]]] = [
    ("reward", ("reward/raw", "reward/normalized", "eval/reward", "reward", "rewards/chosen",
                "rewards/rejected")),
    ("reward margin / accuracy", ("rewards/margins", "rewards/accuracies")),
    ("KL to reference (nats)", ("objective/kl", "eval/kl", "kl")),
    ("response length (tokens)", ("rollout/response_len", "eval/response_len",
                                  "completions/mean_length")),
    ("EOS / truncation / repetition", ("rollout/eos_frac", "rollout/truncated_frac",
                                       "rollout/repeat_frac", "completions/clipped_ratio")),
    ("losses", ("loss/policy", "loss/value", "loss/ptx", "loss", "eval_loss")),
    ("entropy", ("policy/entropy", "entropy")),
    ("reference perplexity", ("ref/perplexity",)),
    ("clip fraction / approx KL", ("policy/clipfrac", "value/clipfrac", "policy/approx_kl",
                                   "clip_ratio/region_mean")),
    ("value explained variance", ("value/explained_var",)),
    ("log-probs", ("logps/chosen", "logps/rejected")),
    ("gradient norm", ("grad/actor_norm", "grad/critic_norm", "grad_norm")),
    ("learning rate", ("lr/actor", "lr/critic", "learning_rate")),
]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _segments(points: list[tuple[int, float]]) -> list[list[tuple[int, float]]]:
    """Split a curve where the step goes back (a rollback re-runs steps), so no line loops."""
    out: list[list[tuple[int, float]]] = []
    for point in points:
        if not out or point[0] <= out[-1][-1][0]:
            out.append([])
        out[-1].append(point)
    return out


def choose_panels(keys: set[str], metrics: list[str] | None = None
                  ) -> list[tuple[str, list[str]]]:
    """The panels to draw: one per asked-for metric, else the PANELS whose metrics were logged."""
    if metrics:
        unknown = [m for m in metrics if m not in keys]
        if unknown:
            raise AlignError(f"--metrics: {', '.join(unknown)} not in the run's metrics; logged: "
                             f"{', '.join(sorted(keys))}")
        return [(m, [m]) for m in metrics]
    return [(title, [k for k in names if k in keys]) for title, names in PANELS
            if any(k in keys for k in names)]


def plot_run(run_dir: str | Path, output: str | Path | None = None,
             metrics: list[str] | None = None) -> Path:
    """Draw the curves of ``run_dir/metrics.jsonl`` to ``output`` (default run_dir/metrics.png)."""
    path = Path(run_dir) / METRICS_FILE if Path(run_dir).is_dir() else Path(run_dir)
    if not path.is_file():
        raise AlignError(f"{run_dir}: no {METRICS_FILE} (is it an align --output-dir?)")
    rows = read_metrics(path)
    keys = {k for r in rows for k, v in r.items()
            if k not in ("step", "time") and _number(v) is not None}
    panels = choose_panels(keys, metrics)
    if not panels:
        raise AlignError(f"{path}: no numeric metrics to plot")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise AlignError("align plot needs matplotlib: pip install 'align[plot]'") from e
    cols = min(3, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.2 * nrows), squeeze=False)
    alarms = sorted({r["step"] for r in rows if any(k.startswith("health/") for k in r)})
    for ax, (title, names) in zip(axes.flat, panels):
        for name in names:
            points = [(r["step"], _number(r[name])) for r in rows
                      if name in r and _number(r[name]) is not None]
            color = None
            for segment in _segments(points):  # a rollback starts a new segment
                xs, ys = zip(*segment)
                line, = ax.plot(xs, ys, marker="." if len(points) < 30 else None, color=color,
                                label=None if color else name)
                color = line.get_color()
        for step in alarms:
            ax.axvline(step, color="red", alpha=0.3, linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(str(Path(run_dir)))
    fig.tight_layout()
    out = Path(output) if output else path.parent / "metrics.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
