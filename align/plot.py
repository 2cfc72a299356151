"""``align plot RUN_DIR [RUN_DIR ...]``: training curves from runs' metrics.jsonl, as one PNG.

What a person wants from a curve, as TensorBoard draws it: each series smoothed with a debiased
exponential moving average (``--smoothing``, TensorBoard's 0.6 by default) over the raw values
drawn faint; one quantity (one scale) per axis, so DPO's margins (~0.01) never share an axis
with its accuracies (0-1), nor PPO's policy loss with its value loss; several runs overlaid in
one figure, one colour per run; a run too short for a curve (fewer than
:data:`MIN_CURVE_POINTS` logged values per metric) as a table of its numbers instead of dots.

Panels are chosen from the keys the runs logged (align's PPO names and TRL's alike), and a
panel whose series still differ in scale by more than :data:`SCALE_RATIO` is split. TRL's
evaluation values (``eval_<name>``) are drawn dashed on their training metric's axis. Steps
where a health detector fired (``health/*`` keys) are marked with a red line. matplotlib is
imported only here, and only when a plot is asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from align.errors import AlignError
from align.metrics import METRICS_FILE, read_metrics

DEFAULT_SMOOTHING = 0.6  # TensorBoard's default smoothing weight
MIN_CURVE_POINTS = 5  # fewer logged values than this in every series: a table, not a curve
SCALE_RATIO = 20.0  # series whose typical magnitudes differ more than this get their own axes
# Values set by a schedule, not measured: drawn as they are (an average would lag them).
EXACT = ("learning_rate", "lr/actor", "lr/critic")

# (title, metrics), one quantity per panel: align's own names first, then TRL's.
PANELS: list[tuple[str, tuple[str, ...]]] = [
    ("reward", ("reward/raw", "eval/reward", "reward")),
    ("reward, normalised", ("reward/normalized",)),
    ("implicit reward (chosen / rejected)", ("rewards/chosen", "rewards/rejected")),
    ("reward margin (chosen - rejected)", ("rewards/margins",)),
    ("preference accuracy", ("rewards/accuracies", "accuracy")),
    ("KL to reference (nats)", ("objective/kl", "eval/kl", "kl")),
    ("response length (tokens)", ("rollout/response_len", "eval/response_len",
                                  "completions/mean_length")),
    ("responses ending with EOS", ("rollout/eos_frac",)),
    ("truncated / repeated responses", ("rollout/truncated_frac", "rollout/repeat_frac",
                                        "completions/clipped_ratio")),
    ("loss", ("loss",)),
    ("policy loss", ("loss/policy",)),
    ("value loss", ("loss/value",)),
    ("PTX loss", ("loss/ptx",)),
    ("entropy", ("policy/entropy", "entropy")),
    ("token accuracy", ("mean_token_accuracy",)),
    ("reference perplexity", ("ref/perplexity",)),
    ("clip fraction", ("policy/clipfrac", "value/clipfrac", "clip_ratio/region_mean")),
    ("approx. KL of the update", ("policy/approx_kl",)),
    ("value explained variance", ("value/explained_var",)),
    ("log-probs (chosen / rejected)", ("logps/chosen", "logps/rejected")),
    ("gradient norm", ("grad/actor_norm", "grad/critic_norm", "grad_norm")),
    ("learning rate", ("learning_rate",)),
    ("actor learning rate", ("lr/actor",)),
    ("critic learning rate", ("lr/critic",)),
]


@dataclass
class Run:
    """One run's logged rows and the label it gets in legends."""

    label: str
    rows: list[dict[str, Any]]

    def series(self, name: str) -> list[tuple[int, float]]:
        return [(int(r["step"]), v) for r in self.rows
                if name in r and (v := finite_number(r[name])) is not None]

    def keys(self) -> set[str]:
        return {k for r in self.rows for k, v in r.items()
                if k not in ("step", "time") and finite_number(v) is not None}

    def alarms(self) -> list[int]:
        return sorted({int(r["step"]) for r in self.rows
                       if any(k.startswith("health/") for k in r)})


def finite_number(value: Any) -> float | None:
    """A logged value as a finite float; None for bools, text, NaN and inf (plots, align board)."""
    if isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def ema(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased so that its start is
    not pulled towards 0 (``s_n = (w s_{n-1} + (1 - w) v_n) / (1 - w^n)``, with the undebiased
    ``s``). ``weight`` 0 returns the values unchanged."""
    out, last = [], 0.0
    for n, v in enumerate(values, start=1):
        last = last * weight + (1.0 - weight) * v
        out.append(last / (1.0 - weight ** n) if weight > 0 else v)
    return out


def segments(points: list[tuple[int, float]]) -> list[list[tuple[int, float]]]:
    """Split a curve where the step goes back (a rollback re-runs steps), so no line loops."""
    out: list[list[tuple[int, float]]] = []
    for point in points:
        if not out or point[0] <= out[-1][-1][0]:
            out.append([])
        out[-1].append(point)
    return out


def _magnitude(values: Sequence[float]) -> float:
    """A series' typical size: the median absolute value (0 for an all-zero series)."""
    ordered = sorted(abs(v) for v in values)
    return ordered[len(ordered) // 2] if ordered else 0.0


def split_by_scale(names: list[str], values: dict[str, list[float]]
                   ) -> list[list[str]]:
    """Group ``names`` so that no axis holds series whose magnitudes differ by more than
    :data:`SCALE_RATIO` (all-zero series join the first group)."""
    sized = sorted(names, key=lambda n: _magnitude(values[n]))
    groups: list[tuple[float, list[str]]] = []
    for name in sized:
        m = _magnitude(values[name])
        if groups and (m == 0.0 or groups[-1][0] == 0.0 or m / groups[-1][0] <= SCALE_RATIO):
            if groups[-1][0] == 0.0:
                groups[-1] = (m, groups[-1][1])
            groups[-1][1].append(name)
        else:
            groups.append((m, [name]))
    # keep each group in the panel's own order of names
    return [[n for n in names if n in group] for _, group in groups]


def choose_panels(keys: set[str], metrics: list[str] | None = None,
                  values: dict[str, list[float]] | None = None
                  ) -> list[tuple[str, list[str]]]:
    """The panels to draw: one per asked-for metric, else the PANELS whose metrics were
    logged, each split by scale when ``values`` (name -> logged values) shows it is needed."""
    if metrics:
        unknown = [m for m in metrics if m not in keys]
        if unknown:
            raise AlignError(f"--metrics: {', '.join(unknown)} not in the runs' metrics; logged: "
                             f"{', '.join(sorted(keys))}")
        return [(m, [m]) for m in metrics]
    panels = []
    drawn: list[list[float]] = []
    for title, names in PANELS:
        # a series identical to one already drawn (reward/normalized without --reward-norm)
        present = [k for k in names if k in keys
                   and not (values and values[k] in drawn)]
        if not present:
            continue
        drawn += [values[k] for k in present] if values else []
        groups = split_by_scale(present, values) if values and len(present) > 1 else [present]
        for group in groups:
            suffix = f" ({', '.join(n.split('/')[-1] for n in group)})" if len(groups) > 1 else ""
            panels.append((title + suffix, group))
    return panels


def load_runs(run_dirs: Sequence[str | Path]) -> list[Run]:
    """Read each run's metrics.jsonl; labels are the directory names (paths when they clash)."""
    paths = []
    for run_dir in run_dirs:
        path = Path(run_dir) / METRICS_FILE if Path(run_dir).is_dir() else Path(run_dir)
        if not path.is_file():
            raise AlignError(f"{run_dir}: no {METRICS_FILE} (is it an align --output-dir?)")
        paths.append(path)
    names = [p.parent.name for p in paths]
    labels = names if len(set(names)) == len(names) else [str(p.parent) for p in paths]
    return [Run(label, read_metrics(p)) for label, p in zip(labels, paths)]


def is_small(runs: Sequence[Run], names: Sequence[str]) -> bool:
    """Whether no series of these runs has enough logged values for a curve."""
    return all(len(run.series(n)) < MIN_CURVE_POINTS for run in runs for n in names)


def table_text(runs: Sequence[Run], names: Sequence[str]) -> str:
    """The logged values as a text table: one row per metric, one column per step of one run,
    or per run (its last value) when several runs are compared."""
    if len(runs) == 1:
        steps = sorted({s for n in names for s, _ in runs[0].series(n)})
        header = ["metric"] + [f"step {s}" for s in steps]
        body = []
        for n in names:
            by_step = dict(runs[0].series(n))
            body.append([n] + [_fmt(by_step.get(s)) for s in steps])
    else:
        header = ["metric (last value)"] + [r.label for r in runs]
        body = [[n] + [_fmt(r.series(n)[-1][1] if r.series(n) else None) for r in runs]
                for n in names]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in body]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise AlignError("align plot needs matplotlib: pip install 'align[plot]'") from e
    return plt


def _draw(ax: Any, runs: Sequence[Run], names: list[str], keys: set[str],
          smoothing: float) -> None:
    """One panel: every run's series of ``names`` (and their eval_ twins), smoothed over faint
    raw values; colours are runs when several are overlaid, else metrics."""
    import matplotlib.pyplot as plt

    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    series = [(n, False) for n in names] + [(f"eval_{n}", True) for n in names
                                           if f"eval_{n}" in keys]
    for r_i, run in enumerate(runs):
        for s_i, (name, is_eval) in enumerate(series):
            points = run.series(name)
            if not points:
                continue
            color = palette[(r_i if len(runs) > 1 else s_i) % len(palette)]
            style = "--" if is_eval else styles[s_i % len(styles)] if len(runs) > 1 else "-"
            label = f"{run.label}: {name}" if len(runs) > 1 else name
            for k, segment in enumerate(segments(points)):  # a rollback starts a new segment
                xs, ys = zip(*segment)
                if is_eval or len(segment) < 3 or smoothing <= 0 or name in EXACT:
                    ax.plot(xs, ys, style, color=color, marker="o" if is_eval else None,
                            markersize=3, label=None if k else label)
                    continue
                ax.plot(xs, ys, "-", color=color, alpha=0.25, linewidth=0.8)
                ax.plot(xs, ema(ys, smoothing), style, color=color, linewidth=1.6,
                        label=None if k else label)
        for step in run.alarms():
            ax.axvline(step, color="red", alpha=0.3, linewidth=1)


def plot_runs(run_dirs: Sequence[str | Path], output: str | Path | None = None,
              metrics: list[str] | None = None, smoothing: float = DEFAULT_SMOOTHING
              ) -> tuple[Path, str | None]:
    """Draw the runs' curves to ``output`` (default: the first run's metrics.png, or
    compare.png beside the runs when several are overlaid).

    Returns (the PNG's path, the text table when the runs were too short for curves)."""
    if not 0.0 <= smoothing < 1.0:
        raise AlignError(f"--smoothing must be in [0, 1), got {smoothing}")
    runs = load_runs(run_dirs)
    keys = set().union(*(r.keys() for r in runs))
    values = {k: [v for r in runs for _, v in r.series(k)] for k in keys}
    panels = choose_panels(keys, metrics, values)
    if not panels:
        raise AlignError(f"{', '.join(map(str, run_dirs))}: no numeric metrics to plot")
    first = Path(run_dirs[0])
    first = first if first.is_dir() else first.parent
    default = first / "metrics.png" if len(runs) == 1 else first.parent / "compare.png"
    out = Path(output) if output else default
    out.parent.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    names = [n for _, group in panels for n in group]
    title = "  vs  ".join(r.label for r in runs)
    if is_small(runs, names):
        text = table_text(runs, names)
        _draw_table(plt, text, title, out)
        return out, text
    fig = draw(plt, runs, panels, keys, smoothing)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out, None


def draw(plt: Any, runs: Sequence[Run], panels: list[tuple[str, list[str]]], keys: set[str],
         smoothing: float) -> Any:
    """The figure: one axis per panel, three panels to a row."""
    cols = min(3, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 3.4 * nrows), squeeze=False,
                             layout="constrained")
    for ax, (panel_title, group) in zip(axes.flat, panels):
        _draw(ax, runs, group, keys, smoothing)
        ax.set_title(panel_title, fontsize=10, wrap=True)
        ax.set_xlabel("step", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    note = f"smoothing {smoothing:g} (EMA; raw values faint)" if smoothing > 0 else "raw values"
    fig.suptitle(f"{'  vs  '.join(r.label for r in runs)}\n{note}", fontsize=11)
    return fig


def _draw_table(plt: Any, text: str, title: str, out: Path) -> None:
    """A run too short for curves: its numbers, as a monospaced table image."""
    fig = plt.figure(figsize=(6.0, 1.0))
    fig.text(0, 1, f"{title}\n(too few logged steps for curves: fewer than {MIN_CURVE_POINTS} "
             "values per metric)", va="bottom", ha="left", fontsize=10)
    fig.text(0, 0.9, text, va="top", ha="left", family="monospace", fontsize=9)
    fig.savefig(out, dpi=100, bbox_inches="tight", pad_inches=0.2)
    plt.close(fig)
