"""The reward sources of one run, in the fixed order ``--reward-weights`` refers to:
the reward model (``--reward-model``), then the built-ins in the order ``--reward-funcs`` names
them, then the user function (``--reward-fn``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from align.config import parse_list
from align.errors import AlignError


@dataclass
class RewardSource:
    """One reward: a callable (TRL signature) or a loaded sequence classifier and its tokenizer."""

    name: str  # what the run prints; TRL logs rewards/<its own name>/mean
    kind: str  # "model" | "builtin" | "plugin"
    func: Any = None  # the callable, or the reward model once loaded
    tokenizer: Any = None  # reward models only
    path: str | None = None  # reward models only


@dataclass
class RewardPlan:
    """The sources and their weights (one per source, 1.0 each unless --reward-weights)."""

    sources: list[RewardSource] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)

    def describe(self) -> str:
        return ", ".join(f"{s.name} x{w:g}" for s, w in zip(self.sources, self.weights))


def plan_rewards(algo: Any, reward_model: str | None, environment: bool = False) -> RewardPlan:
    """Name the sources (nothing loaded, no user code run) and match them with their weights.

    ``algo`` carries ``reward_funcs``, ``reward_fn`` and ``reward_weights`` (GRPO/RLOO args).
    With ``environment`` (an --environment is given) the plan may have no source: the
    environment's ``get_reward()``, weight 1 as in TRL, is checked when it is imported.
    """
    plan = RewardPlan()
    if reward_model:
        plan.sources.append(RewardSource(Path(reward_model).name or "reward_model", "model",
                                         path=reward_model))
    for name in parse_list(algo.reward_funcs):
        plan.sources.append(RewardSource(name, "builtin"))
    if algo.reward_fn:
        plan.sources.append(RewardSource(algo.reward_fn.rpartition(":")[2], "plugin"))
    if not plan.sources and not environment:
        raise AlignError("no reward: give --reward-model DIR, --reward-funcs "
                         "accuracy,format,length and/or --reward-fn file.py:function")
    weights = parse_list(algo.reward_weights)
    if weights and len(weights) != len(plan.sources):
        order = ", ".join(s.name for s in plan.sources)
        raise AlignError(f"--reward-weights has {len(weights)} values for {len(plan.sources)} "
                         f"reward sources; give one per source in this order: {order} "
                         "(reward model, then --reward-funcs in order, then --reward-fn)")
    plan.weights = [float(w) for w in weights] or [1.0] * len(plan.sources)
    return plan


def checked_plan(algo: Any, reward_model: str | None, rows: list[dict[str, Any]],
                 environment: bool = False) -> tuple[RewardPlan, list[str]]:
    """The run's reward plan, checked before anything loads: a --reward-fn file must exist
    (nothing is imported), at least one source, one weight per source, the columns the
    built-ins read (``environment``: as in plan_rewards). Returns the plan and notes on the
    data; raises AlignError."""
    from align.rewards.plugin import reward_fn_path

    if algo.reward_fn:
        reward_fn_path(algo.reward_fn)
    plan = plan_rewards(algo, reward_model, environment)
    return plan, check_columns(plan, rows)


def check_columns(plan: RewardPlan, rows: list[dict[str, Any]]) -> list[str]:
    """Accuracy needs a ``solution`` column: an error when there is none, a note (returned)
    when some rows lack one (they get no accuracy reward)."""
    if not any(s.name == "accuracy" for s in plan.sources):
        return []
    missing = sum(1 for r in rows if r.get("solution") in (None, ""))
    if missing == len(rows):
        raise AlignError("--reward-funcs accuracy compares answers with the dataset's 'solution' "
                         "column, and this dataset has none (map yours with --columns "
                         "solution=YOUR_COLUMN)")
    if missing:
        return [f"{missing} of {len(rows)} records have no solution; accuracy gives them no "
                "reward (None)"]
    return []


def load_rewards(plan: RewardPlan, algo: Any, columns: Iterable[str], model_args: Any,
                 lora_args: Any, train_args: Any) -> RewardPlan:
    """Build every source's callable: load the reward model, configure built-ins, import the
    user function (its code runs now, and only because --reward-fn named it)."""
    from align.rewards.builtin import make_builtin
    from align.rewards.plugin import load_reward_fn

    columns = list(columns)
    for source in plan.sources:
        if source.kind == "model":
            from align.models import load_sequence_classifier, load_tokenizer

            source.func = load_sequence_classifier(source.path, model_args, lora_args, train_args)
            source.tokenizer = load_tokenizer(source.path, model_args)
        elif source.kind == "builtin":
            source.func = make_builtin(source.name, format_pattern=algo.format_pattern,
                                       length_target=algo.length_target)
        else:
            source.func = load_reward_fn(algo.reward_fn, columns)
    return plan


class AbstainGuard:
    """Stops a run whose reward sources all abstain (None) on every completion of a batch:
    TRL would count that as reward 0 and train on nothing. Sources that may return None (the
    built-ins, a --reward-fn) are wrapped; :meth:`batch_done` runs after them (from the health
    probe, TRL's last reward function)."""

    def __init__(self, plan: RewardPlan) -> None:
        self.describe = plan.describe()
        self.scored = False

    def wrap(self, func: Any) -> Any:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            out = func(*args, **kwargs)
            self.scored = self.scored or any(r is not None for r in out)
            return out

        guarded.__name__ = getattr(func, "__name__", "reward")  # TRL logs rewards/<name>/mean
        guarded.__qualname__ = guarded.__name__
        return guarded

    def batch_done(self, n: int) -> None:
        scored, self.scored = self.scored, False
        if not scored:
            raise AlignError(f"every reward source ({self.describe}) returned None for all {n} "
                             "completions of a batch, so there is nothing to learn from; return "
                             "a number for each completion (None only to abstain on some)")

