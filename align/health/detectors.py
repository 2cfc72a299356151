"""The collapse detectors as pure functions, and the rollout statistics they read.

Each detector looks at one logged step's metrics (and the run's starting values) and returns a
:class:`Finding` (unhealthy or not, with the numbers), or None when the step carries nothing it
can judge. Streaks, patience and actions are :class:`align.health.monitor.HealthMonitor`'s.

Canonical metric names read here:
``rollout/response_len`` (mean tokens), ``rollout/truncated_frac`` (share of responses that hit
the token limit without EOS), ``rollout/repeat_frac`` (share of repeated n-grams),
``objective/kl`` (KL to the reference in nats per response), ``logps/chosen`` and
``rewards/margins`` (offline, as TRL names them), ``grad/skipped_updates`` (PPO's non-finite
updates skipped in the step), ``tools/calls_per_episode`` (tool calls per episode) and
``tools/error_frac`` (share of tool calls that failed) of runs with tools; and, for the NaN detector, any loss, objective, gradient norm,
log-prob, logit or reward value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

# Metrics whose non-finite value means the run's numbers broke (NaN detector). Not every
# metric: TRL logs a reward function's mean as NaN when it abstained on every completion.
NONFINITE_WATCHED = ("loss", "objective/", "grad_norm", "grad/", "logps/", "logits/",
                     "reward/")
NONFINITE_EXACT = ("reward",)
SKIPPED = "grad/skipped_updates"  # PPO: optimizer updates skipped for a non-finite gradient


@dataclass
class Finding:
    """A detector's verdict on one logged step: unhealthy or not, and what it saw."""

    bad: bool
    message: str = ""


@dataclass
class Baseline:
    """Values at the start of training, each the mean of the first --health-baseline-steps
    logged values (one batch is noisy), the yardstick for relative detectors."""

    response_len: float | None = None
    truncated_frac: float | None = None
    chosen_logps: float | None = None
    margin: float | None = None
    tool_calls: float | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)


# Baseline field -> the canonical metric it averages.
BASELINE_KEYS = {"response_len": "rollout/response_len",
                 "truncated_frac": "rollout/truncated_frac",
                 "chosen_logps": "logps/chosen", "margin": "rewards/margins",
                 "tool_calls": "tools/calls_per_episode"}


def is_finite(value: Any) -> bool:
    """False only for a number that is NaN or infinite (strings and the like pass)."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


def nonfinite(metrics: dict[str, Any]) -> Finding:
    """NaN/inf in a loss, objective, gradient norm, log-prob, logit or reward."""
    bad = [k for k, v in metrics.items()
           if (k.startswith(NONFINITE_WATCHED) or k in NONFINITE_EXACT) and not is_finite(v)]
    if not bad:
        return Finding(False)
    shown = ", ".join(f"{k} = {metrics[k]}" for k in bad[:4])
    more = f" (and {len(bad) - 4} more)" if len(bad) > 4 else ""
    return Finding(True, f"non-finite values (NaN/inf): {shown}{more}")


def skipped_updates(metrics: dict[str, Any]) -> Finding | None:
    """PPO skips an optimizer step whose loss or gradient is not finite; a streak of steps
    with skipped updates means the numbers are broken, not one odd batch."""
    n = metrics.get(SKIPPED)
    if n is None:
        return None
    return Finding(n > 0, f"{n:g} optimizer updates skipped for a non-finite (NaN/inf) loss "
                          "or gradient in this step")


def repeater(metrics: dict[str, Any], b: Baseline, a: Any) -> Finding | None:
    """Responses run to the token limit without EOS (and repeat themselves, when logged)."""
    trunc = metrics.get("rollout/truncated_frac")
    if trunc is None or b.truncated_frac is None or b.truncated_frac >= a.repeater_truncated_frac:
        return None
    rep = metrics.get("rollout/repeat_frac")
    bad = trunc >= a.repeater_truncated_frac and (rep is None or rep >= a.repeater_repeat_frac)
    rep_text = f", {rep:.0%} repeated 4-grams" if rep is not None else ""
    return Finding(bad, f"{trunc:.0%} of responses ran to the token limit without EOS "
                        f"(at start: {b.truncated_frac:.0%}){rep_text}")


def mute(metrics: dict[str, Any], b: Baseline, a: Any) -> Finding | None:
    """The mean response length shrank far below its starting value (or to almost nothing)."""
    length = metrics.get("rollout/response_len")
    if length is None or not b.response_len:
        return None
    limit = max(a.mute_min_len, a.mute_len_ratio * b.response_len)
    return Finding(length < limit, f"mean response length {length:.1f} tokens (at start: "
                                   f"{b.response_len:.1f}; limit {limit:.1f})")


def kl_blowup(metrics: dict[str, Any], b: Baseline, a: Any) -> Finding | None:
    """The policy ran away from its reference: KL per response above --kl-max."""
    kl = metrics.get("objective/kl")
    if kl is None or not is_finite(kl):
        return None
    return Finding(kl > a.kl_max, f"KL to the reference {kl:.1f} nats per response "
                                  f"(limit --kl-max {a.kl_max:g})")


def likelihood_displacement(metrics: dict[str, Any], b: Baseline, a: Any) -> Finding | None:
    """DPO family: the chosen answers' log-prob falls while the margin grows (Razin et al.
    2024): both answers are pushed down, the rejected one faster."""
    chosen, margin = metrics.get("logps/chosen"), metrics.get("rewards/margins")
    if chosen is None or margin is None or b.chosen_logps is None:
        return None
    drop = b.chosen_logps - float(chosen)
    bad = drop > a.displacement_frac * max(abs(b.chosen_logps), 1.0) \
        and float(margin) > (b.margin or 0.0)
    return Finding(bad, f"chosen log-prob fell from {b.chosen_logps:.2f} to {chosen:.2f} while "
                        f"the margin rose from {b.margin or 0.0:.2f} to {margin:.2f}: both "
                        "answers are being pushed down")


def tool_collapse(metrics: dict[str, Any], b: Baseline, a: Any) -> Finding | None:
    """Agents: the policy stopped calling its tools. Tool calls per episode fell below
    ``--tool-collapse-ratio`` times their starting value, from a start where the model did
    call them (at least ``--tool-collapse-min-calls`` per episode)."""
    calls = metrics.get("tools/calls_per_episode")
    if calls is None or b.tool_calls is None or b.tool_calls < a.tool_collapse_min_calls:
        return None
    limit = a.tool_collapse_ratio * b.tool_calls
    return Finding(float(calls) <= limit,
                   f"{float(calls):.2f} tool calls per episode (at start: {b.tool_calls:.2f}; "
                   f"limit {limit:.2f}): the policy stopped using its tools")


def tool_errors(metrics: dict[str, Any], b: Baseline, a: Any) -> Finding | None:
    """Agents: an error storm. At least ``--tool-error-frac`` of the step's tool calls failed
    (malformed call, unknown tool, bad arguments, a tool that raised or timed out)."""
    frac, calls = metrics.get("tools/error_frac"), metrics.get("tools/calls_per_episode")
    if frac is None or not calls:
        return None
    return Finding(float(frac) >= a.tool_error_frac,
                   f"{float(frac):.0%} of {float(calls):.2f} tool calls per episode failed "
                   f"(limit --tool-error-frac {a.tool_error_frac:g})")


# name -> detector; each fires after --health-patience unhealthy logged steps in a row
STREAK_DETECTORS = {"repeater": repeater, "mute": mute, "kl_blowup": kl_blowup,
                    "likelihood_displacement": likelihood_displacement,
                    "tool_collapse": tool_collapse, "tool_errors": tool_errors}


def repeated_ngram_frac(tokens: Sequence[int], n: int = 4) -> float:
    """Share of the n-grams in ``tokens`` that repeat an earlier n-gram (0 for short ones)."""
    total = len(tokens) - n + 1
    if total <= 1:
        return 0.0
    grams = {tuple(tokens[i:i + n]) for i in range(total)}
    return 1.0 - len(grams) / total


def rollout_stats(responses: Sequence[Sequence[int]], ended: Sequence[bool],
                  max_new_tokens: int, n: int = 4) -> dict[str, float]:
    """Canonical rollout metrics from response token ids (padding and EOS removed).

    ``ended[i]`` says whether response i stopped at EOS. Returns response_len (mean tokens),
    eos_frac, truncated_frac (no EOS and at the limit) and repeat_frac (mean repeated n-grams).
    """
    if not responses:
        return {}
    count = len(responses)
    lengths = [len(r) for r in responses]
    truncated = [not e and ln >= max_new_tokens for e, ln in zip(ended, lengths)]
    return {
        "rollout/response_len": sum(lengths) / count,
        "rollout/eos_frac": sum(bool(e) for e in ended) / count,
        "rollout/truncated_frac": sum(truncated) / count,
        "rollout/repeat_frac": sum(repeated_ngram_frac(list(r), n) for r in responses) / count,
    }


# Detectors that advise rather than report a collapse: --on-collapse stop/rollback ignores
# them (rolling back would not change what they see).
# An error storm is advisory: when the tool itself is broken (a service down, a bug), going
# back to an earlier policy would meet the same errors.
ADVISORY = frozenset({"kl_drift", "critic_stuck", "no_eos", "tool_errors"})
# Advisory detectors that never lead to --on-collapse's action, however long they hold, and
# never keep a checkpoint from being a rollback target: on SmolLM2 the critic explained none
# of the returns in most steps of the PPO run that worked as in the runs that failed
# (docs/ppo.md, 'Defaults on a real chat model'), so the alarm does not tell them apart.
ADVICE_ONLY = frozenset({"critic_stuck"})


def kl_drift(kls: Sequence[float], rewards: Sequence[float], window: int, kl_rise: float
             ) -> str | None:
    """KL rising while the reward stays flat: the older and newer halves of the last
    ``window`` logged steps are compared; fires when the mean KL rose by at least ``kl_rise``
    nats and the mean reward rose by less than half the window's reward spread (its standard
    deviation over steps). Returns the message, or None."""
    if len(kls) < window or len(rewards) < window:
        return None
    k, r = list(kls)[-window:], list(rewards)[-window:]
    half = window // 2
    kl_up = sum(k[half:]) / (window - half) - sum(k[:half]) / half
    gain = sum(r[half:]) / (window - half) - sum(r[:half]) / half
    mean = sum(r) / window
    spread = math.sqrt(sum((x - mean) ** 2 for x in r) / (window - 1))
    if kl_up >= kl_rise and gain < 0.5 * spread:
        return (f"KL to the reference rose by {kl_up:.2f} nats over the last {window} logged "
                f"steps (to {k[-1]:.2f}) while the reward moved by {gain:+.3f} (spread "
                f"{spread:.3f}): drift without gain")
    return None


def critic_stuck(explained: Sequence[float], patience: int) -> str | None:
    """The critic does not learn: explained variance <= 0 in each of the last ``patience``
    logged steps. Returns the message, or None."""
    last = list(explained)[-patience:]
    if len(last) < patience or any(v > 0 for v in last):
        return None
    return (f"value explained variance <= 0 for {patience} logged steps (last {last[-1]:.2f}): "
            "the critic's values explain none of the returns")


def never_ends(eos_fracs: Sequence[float], patience: int, threshold: float) -> str | None:
    """Responses that never end: EOS fraction <= ``threshold`` in each of the last
    ``patience`` logged steps. Returns the message, or None."""
    last = list(eos_fracs)[-patience:]
    if len(last) < patience or any(v > threshold for v in last):
        return None
    return (f"{last[-1]:.0%} of responses ended with EOS in each of the last {patience} logged "
            "steps: every other one was cut at the token limit")


# Metrics whose recent values the online detectors (kl_drift, critic_stuck, no_eos) read.
HISTORY_KEYS = ("objective/kl", "reward/raw", "value/explained_var", "rollout/eos_frac")
