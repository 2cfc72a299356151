"""The quickstart's outputs: a leaderboard on the console, summary.json and curves.png."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import click

COLUMNS = (("gold_reward", "gold", "{:+.3f}"), ("rm_reward", "RM score", "{:+.3f}"),
           ("kl", "KL to SFT", "{:.2f}"), ("mean_length", "length", "{:.1f}"),
           ("health", "health", "{}"), ("seconds", "seconds", "{:.0f}"))
EVENT = re.compile(r"^\[health\] step (\d+): (\w+): (.*?)(?:\. Try: (.*))?$", re.S)


def leaderboard(summary: dict[str, Any]) -> str:
    """The table printed at the end: one row per algorithm, best gold first, SFT last."""
    rows = [(name, {**r, "health": health_cell(r)}) for name, r in
            sorted(summary["algos"].items(), key=lambda kv: -kv[1]["gold_reward"])]
    rows.append(("sft (start)", {**summary["sft"], "health": "", "seconds": 0.0}))
    header = ["algorithm"] + [title for _, title, _ in COLUMNS]
    body = [[name] + [fmt.format(r.get(key)) for key, _, fmt in COLUMNS] for name, r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in body]
    return "\n".join(lines)


def health_cell(result: dict[str, Any]) -> str:
    """The leaderboard's health column: ok, or the detectors that fired (see alarms())."""
    fired = [m.group(2) for e in result.get("health_events", []) if (m := EVENT.match(e))]
    if not fired and result.get("collapsed"):
        return "alarm"
    short = {"likelihood_displacement": "displacement", "kl_blowup": "KL blow-up"}
    return "alarm: " + ", ".join(dict.fromkeys(short.get(f, f) for f in fired)) if fired \
        else "ok"


def alarms(summary: dict[str, Any]) -> list[str]:
    """Each health alarm explained: what the detector saw in words, the numbers, what to try
    in the flags of the algorithm that raised it, and what the held-out gold reward says."""
    from align.health.hints import MEANING

    lines = []
    sft_gold = summary["sft"]["gold_reward"]
    for algo, r in summary["algos"].items():
        events = [m for e in r.get("health_events", []) if (m := EVENT.match(e))]
        for m in events[:1] + [e for e in events[1:] if e.group(2) != events[0].group(2)]:
            step, detector, numbers, hint = m.groups()
            meaning = MEANING.get(detector, "")
            lines.append(
                f"{algo}: the {detector.replace('_', ' ')} detector fired at step {step}. "
                f"{meaning[:1].upper() + meaning[1:]}. Here: {numbers}. "
                + (f"What to try with {algo}: {hint.rstrip('.')}. " if hint else "")
                + f"(A warning about where training was heading: the held-out gold reward, "
                f"{r['gold_reward']:+.3f} against the SFT policy's {sft_gold:+.3f}, is the "
                "verdict.)")
    return lines


def pyplot() -> Any:
    """matplotlib's pyplot on its file-only backend, or None without matplotlib. Importing it
    takes about a second; the pipeline calls this early where a core would otherwise wait."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot(path: Path, curves: dict[str, list[dict[str, float]]],
         over: list[dict[str, float]] | None = None) -> bool:
    """curves.png: gold reward, KL to SFT and length against training progress, per
    algorithm (and the over-optimisation run's RM score against its gold reward)."""
    plt = pyplot()
    if plt is None:
        click.echo("matplotlib is not installed: no curves.png (pip install matplotlib)")
        return False
    agent = curves.get("agent")
    curves = {k: v for k, v in curves.items() if k != "agent"}
    panels = [("gold_reward", "gold reward (held-out)"), ("kl", "KL to SFT (nats/response)"),
              ("mean_length", "response length (tokens)")]
    ncols = len(panels) + (1 if over else 0) + (1 if agent else 0)
    fig, axes = plt.subplots(1, ncols, figsize=(4.2 * ncols, 3.6))
    for ax, (key, title) in zip(axes, panels):
        for algo, points in curves.items():
            ax.plot([p["progress"] for p in points], [p[key] for p in points], marker="o",
                    markersize=3, label=algo)
        ax.set_title(title)
        ax.set_xlabel("fraction of training")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if agent:
        ax = axes[len(panels)]
        ax.plot([p["progress"] for p in agent], [p["gold"] for p in agent], marker="o",
                markersize=3, color="tab:purple", label="grpo + tool")
        ax.axhline(agent[0]["gold"], color="tab:gray", linestyle="--", label="sft + tool")
        ax.set_title("agent task: exact answers (held-out)")
        ax.set_xlabel("fraction of training")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if over:
        ax = axes[-1]
        steps = [p["progress"] for p in over]
        ax.plot(steps, [p["rm_reward"] for p in over], color="tab:red", label="RM score, no KL")
        ax.plot(steps, [p["gold_reward"] for p in over], color="tab:green", label="gold, no KL")
        if "ppo" in curves:  # the same run with its KL leash, for comparison
            with_kl = curves["ppo"]
            ax.plot([p["progress"] for p in with_kl], [p["rm_reward"] for p in with_kl],
                    color="tab:red", linestyle="--", label="RM score, PPO")
            ax.plot([p["progress"] for p in with_kl], [p["gold_reward"] for p in with_kl],
                    color="tab:green", linestyle="--", label="gold, PPO")
        ax.set_title("over-optimisation: PPO without KL")
        ax.set_xlabel("fraction of training")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def overoptimization_note(summary: dict[str, Any]) -> str:
    """One line comparing PPO without KL to PPO with it: higher RM score, lower gold."""
    over, ppo = summary.get("overoptimization"), summary["algos"].get("ppo")
    if not over:
        return ""
    line = (f"PPO without KL: RM score {over['rm_reward']:+.2f}, gold {over['gold_reward']:+.3f}, "
            f"KL {over['kl']:.1f}")
    if ppo:
        line += (f"; PPO with KL: RM score {ppo['rm_reward']:+.2f}, gold "
                 f"{ppo['gold_reward']:+.3f}, KL {ppo['kl']:.1f}")
    return line + " (a higher RM score is not a better policy)"


def write(out: Path, summary: dict[str, Any], curves: dict[str, list[dict[str, float]]],
          over: dict[str, Any] | None = None) -> None:
    summary["curves"] = {k: v for k, v in curves.items() if k != "agent"}
    if "agent" in curves and summary.get("agent"):
        summary["agent"]["curve"] = curves["agent"]
    if over:
        summary["overoptimization"] = over
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    click.echo("\n" + leaderboard(summary))
    if summary.get("agent"):
        from align.quickstart.agent import table

        click.echo("\n" + table(summary["agent"]))
    for line in alarms(summary):
        click.echo("\n" + textwrap.fill(line, 100, subsequent_indent="  "))
    if over:
        click.echo(overoptimization_note(summary))
    drawn = plot(out / "curves.png", curves, over["curve"] if over else None)
    click.echo(f"\nsummary: {out / 'summary.json'}" + (f"; curves: {out / 'curves.png'}"
                                                        if drawn else ""))
