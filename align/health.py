"""Training health: rollout statistics, collapse detectors, and what to do when one fires.

One module shared by PPO, GRPO and the DPO family. Trainers log metrics under canonical names
and call :meth:`HealthMonitor.check` once per logged step; the monitor returns the detectors
that fired, each with the numbers and a hint. The collapse modes come from the seeds
("Secrets of RLHF"; the RM-score-vs-quality article): a model that never stops (*repeater*),
one that answers with nothing (*mute*), a policy running away from its reference (*KL
blow-up*), numerical failure (*NaN*), and for offline preference losses the chosen answers'
likelihood falling while the margin grows (*likelihood displacement*, Razin et al. 2024).

Canonical metric names read by the detectors:
``rollout/response_len`` (mean tokens), ``rollout/truncated_frac`` (share of responses that hit
the token limit without EOS), ``rollout/repeat_frac`` (share of repeated n-grams),
``objective/kl`` (KL to the reference in nats per response), ``logps/chosen`` and
``rewards/margins`` (offline, as TRL names them); any ``loss*`` or ``objective/*`` value that is
NaN or inf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from align.config import arg, validate_choices
from align.errors import AlignError

ON_COLLAPSE = ("warn", "stop", "rollback")


@dataclass
class HealthArgs:
    on_collapse: str = arg(
        "warn", "What to do when a collapse detector fires: warn, stop (save and exit with "
        "code 3), or rollback (reload the last healthy checkpoint, lower the learning rate).",
        choices=ON_COLLAPSE)
    health_patience: int = arg(
        3, "Consecutive unhealthy logged steps before a detector fires (NaN fires at once).")
    health_baseline_steps: int = arg(
        3, "Logged steps averaged into the starting values that relative detectors compare "
        "against (mute, repeater, likelihood displacement); they wait until then.")
    repeater_truncated_frac: float = arg(
        0.8, "Repeater: share of responses that hit the token limit without EOS.",
        source="seed 003: the 'endless repeater' collapse")
    repeater_repeat_frac: float = arg(
        0.3, "Repeater: share of repeated 4-grams in responses (checked when logged).")
    mute_len_ratio: float = arg(
        0.25, "Mute: mean response length below this fraction of its value at the start.",
        source="seed 003: the 'mute' collapse")
    mute_min_len: float = arg(2.0, "Mute: or below this many tokens on average.")
    kl_max: float = arg(
        50.0, "KL blow-up: KL to the reference above this many nats per response.",
        source="Secrets of RLHF: policy constraints are what keep PPO stable")
    displacement_frac: float = arg(
        0.5, "Likelihood displacement (DPO family): chosen log-prob falls by this fraction "
        "of its starting magnitude while the margin grows.", source="Razin et al. 2024")
    rollback_lr_factor: float = arg(0.5, "On rollback, multiply the learning rate by this.")
    max_rollbacks: int = arg(3, "Stop after this many rollbacks in one run.")

    def __post_init__(self) -> None:
        validate_choices(self)
        if self.health_patience < 1:
            raise ValueError("--health-patience must be at least 1")
        if self.health_baseline_steps < 1:
            raise ValueError("--health-baseline-steps must be at least 1")
        if not 0.0 < self.rollback_lr_factor < 1.0:
            raise ValueError("--rollback-lr-factor must be in (0, 1)")


@dataclass
class HealthEvent:
    """A detector that fired: which, when, and a message with the numbers and a hint."""

    detector: str  # repeater | mute | kl_blowup | nan | likelihood_displacement
    step: int
    message: str

    def __str__(self) -> str:
        return f"[health] step {self.step}: {self.detector}: {self.message}"


class CollapseStop(AlignError):
    """Raised after a run saved its state and stopped because of --on-collapse stop."""

    exit_code = 3


HINTS = {
    "repeater": "raise --kl-coef/--beta, add --missing-eos-penalty, lower the learning rate",
    "mute": "raise --kl-coef/--beta, check that the reward does not favour short answers, "
            "lower the learning rate",
    "kl_blowup": "raise --kl-coef/--beta (or set --target-kl), lower the learning rate",
    "nan": "lower the learning rate, keep --max-grad-norm on, prefer --bf16 over --fp16",
    "likelihood_displacement": "mix in the SFT loss (--rpo-alpha 1.0 for dpo, --cpo-alpha "
                               "for cpo/simpo) or lower the learning rate",
}


# What each detector saw, in words (for reports that explain an alarm, such as the
# quickstart's summary); the event's message has the numbers, HINTS what to try.
MEANING = {
    "repeater": "most answers ran to the token limit without ending, repeating themselves: "
                "the policy learnt that long answers score well, or forgot how to stop",
    "mute": "the answers shrank towards nothing: the policy found that saying little scores "
            "well",
    "kl_blowup": "the policy moved far from its reference model: its answers no longer look "
                 "like those of the model it started from, which is where a reward model is "
                 "most easily fooled",
    "nan": "a loss became NaN or infinite: training broke numerically",
    "likelihood_displacement": "the chosen answers became less likely, not more: the loss "
                               "widened the margin by pushing both answers of a pair down, which "
                               "moves probability to answers that are in neither (Razin et al. "
                               "2024)",
}


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


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True  # not a number (e.g. a string field): nothing to judge


# Baseline field -> the canonical metric it averages.
BASELINE_KEYS = {"response_len": "rollout/response_len",
                 "truncated_frac": "rollout/truncated_frac",
                 "chosen_logps": "logps/chosen", "margin": "rewards/margins"}


@dataclass
class _Baseline:
    """Values at the start of training, each the mean of the first --health-baseline-steps
    logged values (one batch is noisy), the yardstick for relative detectors."""

    response_len: float | None = None
    truncated_frac: float | None = None
    chosen_logps: float | None = None
    margin: float | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)


class HealthMonitor:
    """Watches logged metrics step by step; :meth:`check` returns the detectors that fired."""

    def __init__(self, args: HealthArgs) -> None:
        self.args = args
        self.baseline = _Baseline()
        self.streaks: dict[str, int] = {}
        self.events: list[HealthEvent] = []
        self.rollbacks = 0
        self.notes: list[str] = []  # one-time remarks (e.g. truncation before training)

    # --- persistence (exact resume) -------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"baseline": dict(self.baseline.__dict__), "streaks": dict(self.streaks),
                "events": [e.__dict__ for e in self.events], "rollbacks": self.rollbacks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.baseline = _Baseline(**state["baseline"])
        self.streaks = dict(state["streaks"])
        self.events = [HealthEvent(**e) for e in state["events"]]
        self.rollbacks = int(state["rollbacks"])

    # --- detection ------------------------------------------------------------------------
    def _streak(self, name: str, bad: bool) -> bool:
        """Count consecutive bad steps; True (and reset) when the count reaches patience."""
        self.streaks[name] = self.streaks.get(name, 0) + 1 if bad else 0
        if self.streaks[name] >= self.args.health_patience:
            self.streaks[name] = 0
            return True
        return False

    def _set_baseline(self, m: dict[str, Any]) -> None:
        b, n = self.baseline, self.args.health_baseline_steps
        for name, key in BASELINE_KEYS.items():
            if getattr(b, name) is not None or key not in m or not _finite(m[key]):
                continue
            samples = b.samples.setdefault(name, [])
            samples.append(float(m[key]))
            if len(samples) >= n:
                setattr(b, name, sum(samples) / len(samples))
        if b.truncated_frac is not None and len(b.samples.get("truncated_frac", [])) == n \
                and b.truncated_frac >= self.args.repeater_truncated_frac:
            b.samples["truncated_frac"].append(b.truncated_frac)  # note it only once
            self.notes.append(
                f"{b.truncated_frac:.0%} of responses hit the token limit before training; "
                "the repeater detector is off for this run (raise the token limit)")

    def check(self, step: int, metrics: dict[str, Any]) -> list[HealthEvent]:
        """Update with one logged step's metrics; return the detectors that fired now."""
        a, b = self.args, self.baseline
        self._set_baseline(metrics)
        fired: list[tuple[str, str]] = []
        bad = [k for k, v in metrics.items()
               if (k.startswith("loss") or k.startswith("objective/")) and not _finite(v)]
        if bad:
            fired.append(("nan", f"non-finite {', '.join(f'{k} = {metrics[k]}' for k in bad)}"))
        trunc = metrics.get("rollout/truncated_frac")
        if trunc is not None and b.truncated_frac is not None \
                and b.truncated_frac < a.repeater_truncated_frac:
            rep = metrics.get("rollout/repeat_frac")
            is_bad = trunc >= a.repeater_truncated_frac and (rep is None
                                                             or rep >= a.repeater_repeat_frac)
            if self._streak("repeater", is_bad):
                rep_text = f", {rep:.0%} repeated 4-grams" if rep is not None else ""
                fired.append(("repeater", f"{trunc:.0%} of responses ran to the token limit "
                                          f"without EOS (at start: {b.truncated_frac:.0%})"
                                          f"{rep_text}"))
        length = metrics.get("rollout/response_len")
        if length is not None and b.response_len:
            limit = max(a.mute_min_len, a.mute_len_ratio * b.response_len)
            if self._streak("mute", length < limit):
                fired.append(("mute", f"mean response length {length:.1f} tokens (at start: "
                                      f"{b.response_len:.1f}; limit {limit:.1f})"))
        kl = metrics.get("objective/kl")
        if kl is not None and _finite(kl) and self._streak("kl_blowup", kl > a.kl_max):
            fired.append(("kl_blowup", f"KL to the reference {kl:.1f} nats per response "
                                       f"(limit --kl-max {a.kl_max:g})"))
        chosen, margin = metrics.get("logps/chosen"), metrics.get("rewards/margins")
        if chosen is not None and margin is not None and b.chosen_logps is not None:
            drop = b.chosen_logps - float(chosen)
            is_bad = drop > a.displacement_frac * max(abs(b.chosen_logps), 1.0) \
                and float(margin) > (b.margin or 0.0)
            if self._streak("likelihood_displacement", is_bad):
                fired.append(("likelihood_displacement",
                              f"chosen log-prob fell from {b.chosen_logps:.2f} to {chosen:.2f} "
                              f"while the margin rose from {b.margin or 0.0:.2f} to "
                              f"{margin:.2f}: both answers are being pushed down"))
        events = [HealthEvent(name, step, f"{msg}. Try: {HINTS[name]}") for name, msg in fired]
        self.events.extend(events)
        return events

    def decide(self, events: list[HealthEvent]) -> str:
        """The action for these events: continue, warn, stop or rollback (bounded)."""
        if not events:
            return "continue"
        action = self.args.on_collapse
        if action == "rollback":
            if self.rollbacks >= self.args.max_rollbacks:
                self.notes.append(f"{self.rollbacks} rollbacks already (--max-rollbacks); "
                                  "stopping instead")
                return "stop"
            self.rollbacks += 1
        return action

    def summary(self) -> dict[str, Any]:
        """For final metrics: did anything fire, and what."""
        return {"collapsed": bool(self.events),
                "health_events": [str(e) for e in self.events],
                "rollbacks": self.rollbacks}


def health_metrics(events: list[HealthEvent]) -> dict[str, float]:
    """Metrics-row entries marking which detectors fired at this step."""
    return {f"health/{e.detector}": 1.0 for e in events}


def trainer_callback(monitor: HealthMonitor, aliases: dict[str, str] | None = None,
                     derive: Any = None) -> Any:
    """A transformers TrainerCallback that feeds each log event to ``monitor``.

    ``aliases`` renames a trainer's metric keys to the canonical ones (GRPO's
    ``completions/mean_length`` -> ``rollout/response_len``); ``derive(logs)`` may add computed
    canonical metrics. On stop or rollback the callback ends training and records the action
    in ``callback.action``; the caller saves, then rolls back or raises :class:`CollapseStop`.
    """
    import click
    from transformers import TrainerCallback

    names = aliases or {}

    class HealthCallback(TrainerCallback):
        action = "continue"
        fired_at: int | None = None

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
                   **kwargs: Any) -> None:
            if not logs or not state.is_world_process_zero:
                return
            metrics = {names.get(k, k): v for k, v in logs.items()}
            if derive is not None:
                metrics.update(derive(logs))
            events = monitor.check(state.global_step, metrics)
            for note in monitor.notes:
                click.echo(f"[health] {note}", err=True)
            monitor.notes.clear()
            for event in events:
                click.echo(str(event), err=True)
            action = monitor.decide(events)
            if action in ("stop", "rollback"):
                self.action, self.fired_at = action, state.global_step
                control.should_training_stop = True

    return HealthCallback()
