"""Canonical health metrics for TRL's online trainers (GRPO, RLOO).

TRL logs its own names (``completions/mean_length``, per-token ``kl``, ...). Here they get the
canonical names PPO logs (``rollout/response_len``, ``objective/kl`` in nats per response, ...),
written next to TRL's in metrics.jsonl and fed to the shared monitor (``align.health.trainer``
runs it for every TRL-backed algorithm). What TRL does not log, the
share of repeated 4-grams, comes from a zero-weight "reward" that sees the completion token ids.
"""

from __future__ import annotations

from typing import Any, Callable

from align.health.detectors import repeated_ngram_frac

# TRL GRPO/RLOO log key -> canonical name (see align.health and the metric names of
# docs/glossary.md).
ALIASES = {
    "completions/mean_length": "rollout/response_len",
    "completions/clipped_ratio": "rollout/truncated_frac",
    "entropy": "policy/entropy",
    "clip_ratio/region_mean": "policy/clipfrac",
    "clip_ratio/low_mean": "policy/clipfrac_low",
    "clip_ratio/high_mean": "policy/clipfrac_high",
    "kl": "objective/kl_per_token",
    "reward": "objective/scores",
    "reward_std": "objective/scores_std",
}


def derive(logs: dict[str, Any]) -> dict[str, float]:
    """Canonical metrics TRL does not log directly.

    ``rollout/eos_frac``: TRL counts a completion as clipped when its last token is not EOS,
    so the EOS rate is one minus that. ``objective/kl``: TRL's ``kl`` is a mean per completion
    token; times the mean length it approximates nats per response, the unit the KL blow-up
    detector (``--kl-max``) and PPO use.
    """
    out: dict[str, float] = {}
    clipped, length, kl = (logs.get(k) for k in ("completions/clipped_ratio",
                                                 "completions/mean_length", "kl"))
    if isinstance(clipped, (int, float)):
        out["rollout/eos_frac"] = 1.0 - float(clipped)
    if isinstance(kl, (int, float)) and isinstance(length, (int, float)):
        out["objective/kl"] = float(kl) * float(length)
    return out


def canonical(logs: dict[str, Any]) -> dict[str, Any]:
    """The canonical metrics for one training log event (eval events, prefixed eval_, skipped)."""
    out = {name: logs[key] for key, name in ALIASES.items() if key in logs}
    out.update(derive(logs))
    return out


class RepeatProbe:
    """A zero-weight reward that logs ``rollout/repeat_frac`` (repeated 4-grams per completion).

    TRL hands reward functions the completion ids and a ``log_metric`` hook, which makes this
    the one place that sees every rollout. It returns None (abstains), so it never changes a
    reward, and TRL's warning for rows no reward scored still works. Being called last, after
    every real reward of the batch, it also runs ``batch_done(n)`` when given (the check that
    some reward scored the batch: align.rewards.sources.AbstainGuard).
    """

    __name__ = "health_probe"

    def __init__(self, batch_done: Callable[[int], None] | None = None) -> None:
        self.batch_done = batch_done

    def __call__(self, prompts: list[Any], completions: list[Any],
                 completion_ids: list[list[int]] | None = None,
                 log_metric: Callable[[str, float], None] | None = None,
                 **_: Any) -> list[None]:
        if self.batch_done is not None:
            self.batch_done(len(completions))
        if completion_ids and log_metric is not None:
            fracs = [repeated_ngram_frac(ids) for ids in completion_ids]
            log_metric("rollout/repeat_frac", sum(fracs) / len(fracs))
        return [None] * len(completions)
