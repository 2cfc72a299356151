"""The raw reward of each PPO response: the reward model's score, rule functions on the text,
or both, weighted as GRPO weights them (``--reward-weights``, in the order reward model,
``--reward-funcs``, ``--reward-fn``).

The reward model scores token ids (:func:`align.ppo.rollout.score_responses`, in the scoring
pass); the rule functions (align.rewards: the built-ins and a user's ``--reward-fn``, loaded by
the same code as GRPO's) read the decoded completion and the row's other columns, with TRL's
signature ``f(prompts, completions, completion_ids, **columns)``. A source that returns None
for a completion abstains: the total is the weighted sum of the sources that did not (TRL's
rule). A completion every source abstained on gets 0, and a rollout batch where every
completion is in that case stops the run, as GRPO's does (there is nothing to learn from).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor

from align.errors import AlignError


@dataclass
class Scorer:
    """The reward sources of one PPO run, ready to call."""

    plan: Any  # align.rewards.sources.RewardPlan: every source in --reward-weights order
    rm_weight: float | None  # the reward model's weight; None without --reward-model
    rules: list[Any] = field(default_factory=list)  # the loaded non-model sources
    rule_weights: list[float] = field(default_factory=list)
    env_weight: float | None = None  # the environment's get_reward(), the last source

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.plan.sources]


def load_scorer(cfg: Any, data: Any, toolset: Any = None) -> Scorer:
    """Plan the sources (checked again: the runner checked the same plan before any model
    loaded), then build the rule functions; a --reward-fn file is imported here, and only
    because the flag named it. The reward model itself is one of the PPO roles; an
    environment's ``get_reward`` (``toolset``: align.agents.tools.Toolset) counts when its
    class has one."""
    from align.ppo.plan import reward_plan
    from align.rewards import sources as rs

    plan, env_weight = reward_plan(cfg, data)
    if env_weight is not None and not any(e.has_reward for e in toolset.environments.values()):
        if not plan.sources:
            origins = ", ".join(e.origin for e in toolset.environments.values())
            raise AlignError(f"no reward: --environment {origins} has no get_reward() method; "
                             "give --reward-model DIR, --reward-funcs or --reward-fn")
        env_weight = None
    rules = rs.RewardPlan([s for s in plan.sources if s.kind != "model"],
                          [w for s, w in zip(plan.sources, plan.weights) if s.kind != "model"])
    columns = sorted({k for r in data.rows for k in r} - {"prompt"})
    rs.load_rewards(rules, cfg.algo, columns, cfg.model, cfg.lora, cfg.train)
    rm = [w for s, w in zip(plan.sources, plan.weights) if s.kind == "model"]
    return Scorer(plan, rm[0] if rm else None, rules.sources, rules.weights, env_weight)


def completions(tokenizer: Any, response_ids: Tensor, mask: Tensor, eos_ids: Sequence[int],
                chat: bool) -> tuple[list[Any], list[list[int]]]:
    """Each response as the reward functions see it (TRL's convention): its text without the
    EOS, as an assistant message for chat prompts; and its token ids (EOS included, as TRL's
    ``completion_ids``). Shapes: response_ids, mask (B, T)."""
    ids = [row[m].tolist() for row, m in zip(response_ids, mask.bool())]
    texts = tokenizer.batch_decode([[t for t in row if t not in eos_ids] for row in ids],
                                   skip_special_tokens=True)
    if chat:
        return [[{"role": "assistant", "content": t}] for t in texts], ids
    return texts, ids


def rule_rewards(scorer: Scorer, rows: Sequence[dict[str, Any]], completions: list[Any],
                 completion_ids: list[list[int]]
                 ) -> tuple[list[float | None], dict[str, list[float]]]:
    """The rule sources on a batch (align.rewards.evaluate.score, as GRPO's evaluation sums
    them): their weighted total per completion (None where all of them abstained, or there
    is no rule source) and each source's non-None values."""
    from align.rewards.evaluate import score

    if not scorer.rules:
        return [None] * len(completions), {}
    prompts = [r["prompt"] for r in rows]
    columns = {k: [r.get(k) for r in rows] for k in sorted({k for r in rows for k in r})
               if k != "prompt"}
    return score(scorer.rules, scorer.rule_weights, prompts, completions, completion_ids,
                 columns)


def add_environment(totals: list[float | None], env_rewards: list[float | None],
                    weight: float) -> list[float | None]:
    """The rules' totals plus ``weight`` x each episode's ``get_reward()`` (None abstains)."""
    return [t if e is None else (t or 0.0) + weight * e for t, e in zip(totals, env_rewards)]


def total_scores(rm_scores: Tensor | None, rm_weight: float | None,
                 rule_totals: list[float | None]) -> tuple[Tensor, Tensor]:
    """The raw reward of each response: ``rm_weight`` x the reward model's score plus the
    rules' weighted total; 0 where no source gave a number. Returns (scores (B,) float32,
    abstained (B,) bool: no source gave a number)."""
    rules = torch.tensor([0.0 if v is None else v for v in rule_totals], dtype=torch.float32)
    absent = torch.tensor([v is None for v in rule_totals])
    if rm_scores is not None and rm_weight is not None:
        rules = rules.to(rm_scores.device)
        return rm_weight * rm_scores.float() + rules, torch.zeros_like(absent).to(rm_scores.device)
    return rules, absent


def check_not_all_abstained(scorer: Scorer, abstained: Tensor) -> None:
    """Stop a run whose rule sources abstained on every completion of a rollout batch (the
    whole batch, so every process decides the same)."""
    if scorer.rm_weight is None and bool(abstained.all()):
        sources = ", ".join(filter(None, [scorer.plan.describe(), "the environment's get_reward"
                                          if scorer.env_weight is not None else ""]))
        raise AlignError(f"every reward source ({sources}) returned None for "
                         f"all {abstained.numel()} responses of a rollout batch, so there is "
                         "nothing to learn from; return a number for each completion (None "
                         "only to abstain on some)")


def source_metrics(prefix: str, kept: list[dict[str, list[float]]]) -> dict[str, float]:
    """Mean of each rule source over the responses it scored (``<prefix>/<name>``), from
    every process's non-None values."""
    out = {}
    for name in sorted({k for part in kept for k in part}):
        vals = [v for part in kept for v in part.get(name, [])]
        if vals:
            out[f"{prefix}/{name}"] = sum(vals) / len(vals)
    return out
