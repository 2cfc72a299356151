"""Canonical health metrics for TRL's online trainers (GRPO, RLOO).

TRL logs its own names (``completions/mean_length``, per-token ``kl``, ...). Here they get the
canonical names PPO logs (``rollout/response_len``, ``objective/kl`` in nats per response, ...),
written next to TRL's in metrics.jsonl and fed to the shared monitor (``align.health.trainer``
runs it for every TRL-backed algorithm). What TRL does not log, the
share of repeated 4-grams, comes from a zero-weight "reward" that sees the completion token ids;
in runs with tools the same probe reads each episode's messages (:func:`episode_stats`).
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


# How TRL 1.16's tool loop writes a failed call into the tool turn: str({"error": message}).
TOOL_ERROR_PREFIX = "{'error':"


def episode_stats(completions: list[Any], call_marker: str | None = None) -> dict[str, float]:
    """Agent metrics of one batch of multi-turn completions, as TRL's GRPOTrainer returns them
    (each a list of messages: assistant turns, with ``tool_calls`` when the model called, and
    the ``tool`` turns with the results), under the names align's own loop logs
    (``align.agents.loop.episode_metrics``). Means over episodes:

    ``tools/calls_per_episode``; ``tools/errors_per_episode`` (the tool turn holds TRL's error
    message: unknown tool, bad arguments, a tool that raised or timed out); ``tools/error_frac``
    failed calls over all calls; ``rollout/turns`` assistant turns per episode;
    ``tools/cut_by_budget_frac`` share of episodes that ended on a call that never ran (the
    tool-calling budget, or the completion length, ran out); ``tools/malformed_frac`` share of
    episodes whose last turn holds ``call_marker`` (a call the template's parser could not
    read, left as text). Empty for text completions."""
    episodes = [c for c in completions if isinstance(c, list)]
    if not episodes:
        return {}
    calls = errors = turns = cut = malformed = 0
    for messages in episodes:
        for m in messages:
            if m.get("role") == "assistant":
                turns += 1
                calls += len(m.get("tool_calls") or [])
            elif m.get("role") == "tool":
                errors += str(m.get("content", "")).startswith(TOOL_ERROR_PREFIX)
        last = messages[-1] if messages else {}
        cut += bool(last.get("role") == "assistant" and last.get("tool_calls"))
        malformed += bool(call_marker and last.get("role") == "assistant"
                          and call_marker in str(last.get("content") or ""))
    n = len(episodes)
    return {"tools/calls_per_episode": calls / n, "tools/errors_per_episode": errors / n,
            "tools/error_frac": errors / calls if calls else 0.0,
            "rollout/turns": turns / n, "tools/cut_by_budget_frac": cut / n,
            "tools/malformed_frac": malformed / n}


class RepeatProbe:
    """A zero-weight reward that logs ``rollout/repeat_frac`` (repeated 4-grams per completion).

    TRL hands reward functions the completion ids and a ``log_metric`` hook, which makes this
    the one place that sees every rollout. It returns None (abstains), so it never changes a
    reward, and TRL's warning for rows no reward scored still works. Being called last, after
    every real reward of the batch, it also runs ``batch_done(n)`` when given (the check that
    some reward scored the batch: align.rewards.sources.AbstainGuard).
    """

    __name__ = "health_probe"

    def __init__(self, batch_done: Callable[[int], None] | None = None,
                 call_marker: str | None = None) -> None:
        self.batch_done = batch_done
        self.call_marker = call_marker  # with tools: the text that opens a call (episode_stats)

    def __call__(self, prompts: list[Any], completions: list[Any],
                 completion_ids: list[list[int]] | None = None,
                 log_metric: Callable[[str, float], None] | None = None,
                 **_: Any) -> list[None]:
        if self.batch_done is not None:
            self.batch_done(len(completions))
        if completion_ids and log_metric is not None:
            fracs = [repeated_ngram_frac(ids) for ids in completion_ids]
            log_metric("rollout/repeat_frac", sum(fracs) / len(fracs))
        if self.call_marker is not None and log_metric is not None:
            for name, value in episode_stats(completions, self.call_marker).items():
                log_metric(name, value)
        return [None] * len(completions)
