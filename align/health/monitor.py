"""The health monitor: runs the detectors on each logged step, counts streaks, decides.

Trainers log metrics under canonical names and call :meth:`HealthMonitor.check` once per logged
step; it returns the detectors that fired, each with the numbers and a hint in the running
algorithm's flags. :meth:`HealthMonitor.decide` turns them into an action: continue, warn, stop
or rollback. Non-finite values stop a run even under ``--on-collapse warn``: a model whose
numbers broke does not recover by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from align.errors import AlignError
from align.health import detectors as det
from align.health.args import HealthArgs
from align.health.hints import hint


@dataclass
class HealthEvent:
    """A detector that fired: which, when, and a message with the numbers and a hint."""

    detector: str  # repeater | mute | kl_blowup | nan | likelihood_displacement | kl_drift ...
    step: int
    message: str
    # an online (advisory) detector still firing --advice-patience logged steps after its first
    # alarm: --on-collapse acts on it like on a collapse
    persistent: bool = False

    def __str__(self) -> str:
        return f"[health] step {self.step}: {self.detector}: {self.message}"


class CollapseStop(AlignError):
    """Raised after a run saved its state and stopped because of a detector (exit code 3)."""

    exit_code = 3


class HealthMonitor:
    """Watches logged metrics step by step; :meth:`check` returns the detectors that fired."""

    def __init__(self, args: HealthArgs, algo: str | None = None) -> None:
        self.args = args
        self.algo = algo
        self.baseline = det.Baseline()
        self.streaks: dict[str, int] = {}
        self.events: list[HealthEvent] = []
        self.rollbacks = 0
        self.notes: list[str] = []  # one-time remarks (e.g. truncation before training)
        self._fired_last = False
        self.history: dict[str, list[float]] = {}  # recent values of det.HISTORY_KEYS
        self.advising: list[str] = []  # advisory detectors whose condition holds now
        self.advice_streaks: dict[str, int] = {}  # logged steps each has held in a row

    # --- persistence (exact resume) -------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"baseline": dict(self.baseline.__dict__), "streaks": dict(self.streaks),
                "events": [e.__dict__ for e in self.events], "rollbacks": self.rollbacks,
                "history": {k: list(v) for k, v in self.history.items()},
                "advising": list(self.advising), "advice_streaks": dict(self.advice_streaks)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.baseline = det.Baseline(**state["baseline"])
        self.streaks = dict(state["streaks"])
        self.events = [HealthEvent(**e) for e in state["events"]]
        self.rollbacks = int(state["rollbacks"])
        self.history = {k: list(v) for k, v in state.get("history", {}).items()}
        self.advising = list(state.get("advising", []))
        # a state saved before streaks were kept: what held then had just fired
        self.advice_streaks = dict(state.get("advice_streaks",
                                             {name: 1 for name in self.advising}))

    # --- detection ------------------------------------------------------------------------
    def healthy(self) -> bool:
        """No detector fired at the last check, none has a streak running and no online
        detector's condition holds: a checkpoint saved now is one a rollback may return to."""
        return not self._fired_last and not any(self.streaks.values()) and \
            not any(name not in det.ADVICE_ONLY for name in self.advising)

    def _streak(self, name: str, bad: bool, patience: int) -> bool:
        """Count consecutive bad steps; True (and reset) when the count reaches patience."""
        self.streaks[name] = self.streaks.get(name, 0) + 1 if bad else 0
        if self.streaks[name] >= patience:
            self.streaks[name] = 0
            return True
        return False

    def _set_baseline(self, m: dict[str, Any]) -> None:
        b, n = self.baseline, self.args.health_baseline_steps
        for name, key in det.BASELINE_KEYS.items():
            if getattr(b, name) is not None or key not in m or not det.is_finite(m[key]):
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
        a = self.args
        self._set_baseline(metrics)
        fired: list[tuple[str, str]] = []
        finding = det.nonfinite(metrics)
        if finding.bad:  # at once: there is nothing to wait for
            fired.append(("nan", finding.message))
        skipped = det.skipped_updates(metrics)
        if skipped is not None and self._streak("skipped_updates", skipped.bad,
                                                a.health_patience):
            fired.append(("nan", f"{skipped.message}, {a.health_patience} steps in a row"))
        for name, detector in det.STREAK_DETECTORS.items():
            finding = detector(metrics, self.baseline, a)
            if finding is not None and self._streak(name, finding.bad, a.health_patience):
                fired.append((name, finding.message))
        advice, persistent = self._online_checks(metrics)
        events = [HealthEvent(name, step, f"{msg}. Try: {hint(name, self.algo)}",
                              persistent=name in persistent)
                  for name, msg in fired + advice]
        self.events.extend(events)
        self._fired_last = bool(fired)
        return events

    def _online_checks(self, m: dict[str, Any]) -> tuple[list[tuple[str, str]], set[str]]:
        """KL drift, a critic that does not learn, responses that never end (online runs).
        Each advises once when its condition starts to hold; if it still holds
        --advice-patience logged steps later it fires again, as persistent (``--on-collapse``
        acts on it); then again only after it has been quiet. Returns the (name, message)
        that fired and the names among them that are persistent."""
        a = self.args
        keep = max(a.drift_window, a.critic_patience, a.health_patience)
        for key in det.HISTORY_KEYS:
            if key in m and det.is_finite(m[key]):
                values = self.history.setdefault(key, [])
                values.append(float(m[key]))
                del values[:-keep]
        h = self.history
        found = {
            "kl_drift": det.kl_drift(h.get("objective/kl", []), h.get("reward/raw", []),
                                     a.drift_window, a.drift_kl_rise)
            if "objective/kl" in m else None,
            "critic_stuck": det.critic_stuck(h.get("value/explained_var", []),
                                             a.critic_patience)
            if "value/explained_var" in m else None,
            "no_eos": det.never_ends(h.get("rollout/eos_frac", []), a.health_patience,
                                     a.no_eos_frac)
            if "rollout/eos_frac" in m else None,
        }
        patience = a.advice_patience
        for name, msg in found.items():
            self.advice_streaks[name] = self.advice_streaks.get(name, 0) + 1 if msg else 0
        fired, persistent = [], set()
        for name, msg in found.items():
            held = self.advice_streaks[name]
            if held == 1:
                fired.append((name, msg))
            elif patience and held == 1 + patience:
                if self._may_act(name):
                    persistent.add(name)
                fired.append((name, f"still, {patience} logged steps after the first alarm: "
                                    f"{msg}"))
        self.advising = [name for name, msg in found.items() if msg]
        return fired, persistent

    def _may_act(self, name: str) -> bool:
        """Whether a persistent advisory detector may lead to --on-collapse's action. Those of
        ``ADVICE_ONLY`` (critic_stuck) never do. no_eos does on PPO (the reward model then
        scores cut text; the missing-EOS penalty with the turn-end reading is the remedy) and
        where answers used to end; on a GRPO/RLOO run whose answers already hit the token
        limit before training (said once at the start) it stays advice: training did not cause
        it, and the group-relative reward still ranks the cut answers."""
        if name in det.ADVICE_ONLY:
            return False
        if name != "no_eos" or self.algo == "ppo":
            return True
        start = self.baseline.truncated_frac
        return start is None or start < self.args.repeater_truncated_frac

    def decide(self, events: list[HealthEvent]) -> str:
        """The action for these events: continue, warn, stop or rollback (bounded).

        Non-finite values (the ``nan`` detector) stop the run under ``--on-collapse warn``.
        Advisory detectors (KL drift, critic, EOS) only warn at their first alarm; when they
        keep firing (``persistent``) the chosen action applies to them too."""
        events = [e for e in events if e.detector not in det.ADVISORY or e.persistent]
        if not events:
            return "continue"
        action = self.args.on_collapse
        if action == "warn" and any(e.detector == "nan" for e in events):
            action = "stop"
        if action == "rollback":
            if self.rollbacks >= self.args.max_rollbacks:
                self.notes.append(f"{self.rollbacks} rollbacks already (--max-rollbacks); "
                                  "stopping instead")
                return "stop"
            self.rollbacks += 1
        return action

    def summary(self) -> dict[str, Any]:
        """For final metrics: did a collapse detector fire (advisory ones count only when they
        kept firing), and what fired."""
        collapses = [e for e in self.events if e.detector not in det.ADVISORY or e.persistent]
        return {"collapsed": bool(collapses),
                "health_events": [str(e) for e in self.events],
                "rollbacks": self.rollbacks}


def health_metrics(events: list[HealthEvent]) -> dict[str, float]:
    """Metrics-row entries marking which detectors fired at this step."""
    return {f"health/{e.detector}": 1.0 for e in events}
