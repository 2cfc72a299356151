"""The health flags (``--on-collapse``, the detectors' thresholds): imported by the registry, so
nothing heavy here."""

from __future__ import annotations

from dataclasses import dataclass

from align.config import arg, validate_fields

ON_COLLAPSE = ("warn", "stop", "rollback")


@dataclass
class HealthArgs:
    on_collapse: str = arg(
        "warn", "What to do when a collapse detector fires: warn, stop (save and exit with "
        "code 3), or rollback (reload the last healthy checkpoint, lower the learning rate). "
        "Non-finite values (NaN/inf) stop the run under warn too.",
        choices=ON_COLLAPSE)
    health_patience: int = arg(
        3, "Consecutive unhealthy logged steps before a detector fires (NaN fires at once; "
        "PPO's skipped non-finite updates count as unhealthy steps).", bounds="[1, inf)")
    health_baseline_steps: int = arg(
        3, "Logged steps averaged into the starting values that relative detectors compare "
        "against (mute, repeater, likelihood displacement); they wait until then.",
        bounds="[1, inf)")
    repeater_truncated_frac: float = arg(
        0.8, "Repeater: share of responses that hit the token limit without EOS.",
        source="seed 003: the 'endless repeater' collapse", bounds="(0, 1]")
    repeater_repeat_frac: float = arg(
        0.3, "Repeater: share of repeated 4-grams in responses (checked when logged).",
        bounds="[0, 1]")
    mute_len_ratio: float = arg(
        0.25, "Mute: mean response length below this fraction of its value at the start.",
        source="seed 003: the 'mute' collapse", bounds="[0, 1)")
    mute_min_len: float = arg(2.0, "Mute: or below this many tokens on average.",
                              bounds="[0, inf)")
    kl_max: float = arg(
        50.0, "KL blow-up: KL to the reference above this many nats per response.",
        source="Secrets of RLHF: policy constraints are what keep PPO stable", bounds="(0, inf)")
    displacement_frac: float = arg(
        0.5, "Likelihood displacement (DPO family): chosen log-prob falls by this fraction "
        "of its starting magnitude while the margin grows.", source="Razin et al. 2024",
        bounds="(0, inf)")
    drift_window: int = arg(
        8, "KL drift (online RL): logged steps compared, older half against newer half.",
        source="issue 19: KL rose to 3.7 nats while the reward stayed flat", bounds="[4, inf)")
    drift_kl_rise: float = arg(
        1.0, "KL drift: KL to the reference rising by this many nats per response (newer half "
        "of the window against the older) while the reward does not rise.", bounds="(0, inf)")
    critic_patience: int = arg(
        5, "Critic not learning (PPO, advice only: --on-collapse never acts on it): explained "
        "variance <= 0 for this many logged steps.",
        source="SmolLM2-135M PPO dev runs: the critic explained none of the returns in most "
               "steps of the run that worked too (docs/ppo.md)", bounds="[1, inf)")
    no_eos_frac: float = arg(
        0.05, "Responses never end: EOS fraction at or below this for --health-patience "
        "logged steps.", bounds="[0, 1]")
    advice_patience: int = arg(
        3, "Online detectors (kl_drift, critic_stuck, no_eos) advise once; if one still fires "
        "this many logged steps later, --on-collapse acts on it (stop, rollback; warn prints "
        "it again), except on critic_stuck, which stays advice. 0: advice only.",
        source="SmolLM2-135M PPO dev run that failed (gold 0.01 -> 0.00): all three held from "
               "their first alarm to the end; issue 26's run that worked had one lone "
               "kl_drift alarm (docs/ppo.md)", bounds="[0, inf)")
    tool_collapse_ratio: float = arg(
        0.1, "Tool collapse (runs with tools): tool calls per episode at or below this "
        "fraction of their starting value.",
        source="align default: a policy that keeps a tenth of its calls has given the tool up",
        bounds="[0, 1)")
    tool_collapse_min_calls: float = arg(
        0.2, "Tool collapse: watched only when the run started with at least this many tool "
        "calls per episode (a model that never called its tools cannot stop).",
        bounds="[0, inf)")
    tool_error_frac: float = arg(
        0.5, "Tool error storm (advisory): share of a step's tool calls that failed (malformed, "
        "unknown tool, bad arguments, raised, timed out).",
        source="align default: most calls failing is a broken tool or a broken policy",
        bounds="(0, 1]")
    rollback_lr_factor: float = arg(0.5, "On rollback, multiply the learning rate by this.",
                                    bounds="(0, 1)")
    max_rollbacks: int = arg(3, "Stop after this many rollbacks in one run.", bounds="[0, inf)")

    def __post_init__(self) -> None:
        validate_fields(self)
