"""The multi-turn rollout: generate, read the tool calls, run them, write the tool turns, and
generate again, until the model answers without a call or a budget runs out.

One loop for every user of it (``align generate``/``chat`` with tools, PPO's rollouts). The
sequence of one rollout is built by concatenating token ids, never by re-tokenizing text: the
prompt (rendered by the chat template, tool schemas included), then each turn the model sampled
(mask 1), then the tool turn the chat template writes around the results (mask 0), then the
next sampled turn, and so on. So the mask says exactly which tokens the model chose, and
losses, KL and advantages read it rather than re-deriving it (TRL's GRPOTrainer builds its
``tool_mask`` the same way).

Budgets: ``max_completion_length`` tokens after the prompt, sampled and written together (as
TRL counts them), and ``Toolset.max_tool_calls`` calls per rollout; a turn asking for calls
past the budget ends the rollout there, its calls not run (``cut_by_budget``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from align.agents.execute import run_calls
from align.agents.parsing import ToolCall, assistant_message
from align.agents.tools import Toolset
from align.errors import AlignError

# (token ids of each active rollout so far, most new tokens for each) -> the new token ids of
# each, up to and including the stop token when the model stopped; no padding.
Sampler = Callable[[list[list[int]], list[int]], list[list[int]]]


@dataclass
class Episode:
    """One rollout: its transcript, its tokens with the mask, and what happened in it."""

    row: dict[str, Any]  # the data row it started from (reset's keyword arguments)
    messages: list[dict[str, Any]]  # prompt (+ reset's text), then assistant and tool turns
    prompt_ids: list[int]  # (P,) the rendered prompt, generation prompt included
    completion_ids: list[int] = field(default_factory=list)  # (T,) everything after the prompt
    mask: list[int] = field(default_factory=list)  # (T,) 1: sampled by the model; 0: env wrote it
    tool_calls: int = 0  # calls run (errors included)
    tool_errors: int = 0  # calls that gave an error message instead of a result
    turns: int = 0  # assistant turns generated
    cut_by_budget: bool = False  # asked for calls past --max-tool-calls
    truncated: bool = False  # ran out of max_completion_length tokens
    environment: Any = None  # its environment instance (state after the rollout), or None
    env_name: str | None = None
    env_reward: float | None = None  # the environment's get_reward(), when it has one
    tool_seconds: float = 0.0  # wall time spent in tools

    @property
    def sampled_tokens(self) -> int:
        return sum(self.mask)

    def record(self) -> dict[str, Any]:
        """The episode as one JSON-able object (what ``align generate --output`` writes)."""
        return {"messages": self.messages, "tool_calls": self.tool_calls,
                "tool_errors": self.tool_errors, "turns": self.turns,
                "cut_by_budget": self.cut_by_budget, "truncated": self.truncated,
                "sampled_tokens": self.sampled_tokens, "env_reward": self.env_reward}


def render_ids(tokenizer: Any, messages: list[dict[str, Any]], tools: Any = None,
               generation_prompt: bool = True) -> list[int]:
    """Token ids of ``messages`` through the tokenizer's chat template."""
    ids = tokenizer.apply_chat_template(messages, tools=tools, tokenize=True, return_dict=False,
                                        add_generation_prompt=generation_prompt)
    return list(ids["input_ids"] if isinstance(ids, dict) else ids)


def tool_turn_ids(tokenizer: Any, tool_messages: list[dict[str, Any]], end_id: int | None,
                  cache: dict[str, list[int]] | None = None) -> list[int]:
    """The tokens the chat template writes after an assistant turn that called tools: the tool
    turn(s) holding ``tool_messages`` and the next assistant turn's opening.

    Found as the difference between a short conversation rendered with and without them, its
    assistant turn cut at its end-of-turn token ``end_id`` (the model's own turn ends there).
    ``cache`` keeps that prefix per tool name between calls."""
    name = tool_messages[0]["name"]
    prefix = cache.get(name) if cache is not None else None
    dummy = [{"role": "user", "content": "x"},
             {"role": "assistant", "content": "",
              "tool_calls": [{"type": "function", "function": {"name": name, "arguments": {}}}]}]
    if prefix is None:
        prefix = render_ids(tokenizer, dummy, generation_prompt=False)
        ends = [i for i, t in enumerate(prefix) if t == end_id]
        if ends:
            prefix = prefix[:ends[-1] + 1]
        if cache is not None:
            cache[name] = prefix
    full = render_ids(tokenizer, dummy + tool_messages, generation_prompt=True)
    if full[:len(prefix)] != prefix:
        raise AlignError("the chat template renders an assistant turn differently once tool "
                         "results follow it, so the tool turn cannot be appended to what the "
                         "model generated; use --chat-template chatml-tools")
    return full[len(prefix):]


def start_episode(i: int, row: dict[str, Any], prompt: list[dict[str, Any]], toolset: Toolset | None,
                  label: str) -> Episode:
    """Episode ``i`` before its first turn: its environment made and reset with the row."""
    messages = copy.deepcopy(prompt)
    ep = Episode(row=row, messages=messages, prompt_ids=[])
    if toolset is None or not toolset.environments:
        return ep
    ep.env_name = toolset.env_name_of(row)
    if ep.env_name not in toolset.environments:
        raise AlignError(f"{label}: field 'environment': expected one of "
                         f"{', '.join(str(n) for n in toolset.environments)} (--environment), "
                         f"found {row.get('environment')!r}")
    spec = toolset.environments[ep.env_name]
    ep.environment = spec.new()
    kwargs = {k: v for k, v in row.items() if k != "environment"} \
        if toolset.multi_environment else dict(row)
    try:
        observation = ep.environment.reset(**kwargs)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - user code: name the row
        raise AlignError(f"--environment {spec.origin}: reset raised {type(e).__name__}: {e} "
                         f"on {label} (its columns: {', '.join(sorted(kwargs))})") from e
    if observation is None:
        return ep
    if not isinstance(observation, str):
        raise AlignError(f"--environment {spec.origin}: reset returned a "
                         f"{type(observation).__name__} on {label}; return the text to append "
                         "to the last user message, or None")
    last = messages[-1]
    messages[-1] = {**last, "content": (last.get("content") or "") + observation}
    return ep


def rollout(rows: Sequence[dict[str, Any]], prompts: Sequence[list[dict[str, Any]]],
            sampler: Sampler, tokenizer: Any, toolset: Toolset | None, *,
            max_completion_length: int, stop_ids: Sequence[int] | None = None,
            fmt: str = "hermes", labels: Sequence[str] | None = None,
            timings: dict[str, float] | None = None) -> list[Episode]:
    """Roll out one episode per row: ``prompts[i]`` (chat messages) for ``rows[i]`` (its
    columns, given to the environment's ``reset``). ``stop_ids``: the tokens that end a turn
    (default: the tokenizer's EOS). ``labels`` name the rows in errors (default "row N").

    Turns are generated for all unfinished episodes together; their tool calls run in
    parallel (:func:`align.agents.execute.run_calls`). Tool errors never raise: they are
    counted and shown to the model. An environment whose ``reset`` or ``get_reward`` raises
    is an AlignError naming the row. ``timings``, when given, receives the wall seconds spent
    sampling (``sample_s``) and in tools (``tools_s``)."""
    timings = timings if timings is not None else {}
    timings.setdefault("sample_s", 0.0)
    timings.setdefault("tools_s", 0.0)
    labels = list(labels) if labels is not None else [f"row {i + 1}" for i in range(len(rows))]
    stops = set(stop_ids) if stop_ids is not None else {tokenizer.eos_token_id}
    end_id = tokenizer.eos_token_id if tokenizer.eos_token_id in stops else min(stops)
    episodes = [start_episode(i, dict(r), p, toolset, labels[i])
                for i, (r, p) in enumerate(zip(rows, prompts))]
    tools = [{t.name: t for t in toolset.tools_for(ep.env_name)} if toolset else {}
             for ep in episodes]
    for ep in episodes:
        schemas = toolset.schemas(ep.env_name) if toolset else None
        ep.prompt_ids = render_ids(tokenizer, ep.messages, tools=schemas)
    cache: dict[str, list[int]] = {}
    active = list(range(len(episodes)))
    while active:
        seqs = [episodes[i].prompt_ids + episodes[i].completion_ids for i in active]
        limits = [max_completion_length - len(episodes[i].completion_ids) for i in active]
        start = time.perf_counter()
        new_ids = sampler(seqs, limits)
        timings["sample_s"] += time.perf_counter() - start
        pending: dict[int, list[ToolCall]] = {}
        for i, ids, limit in zip(active, new_ids, limits):
            ep = episodes[i]
            ids = list(ids)[:limit]
            ep.completion_ids += ids
            ep.mask += [1] * len(ids)
            ep.turns += 1
            finished = bool(ids) and ids[-1] in stops
            text = tokenizer.decode(ids[:-1] if finished else ids, skip_special_tokens=False)
            message, calls = (assistant_message(text, fmt) if toolset else
                              ({"role": "assistant", "content": text.strip()}, []))
            ep.messages.append(message)
            if not finished:
                ep.truncated = True
            elif calls and ep.tool_calls + len(calls) > (toolset.max_tool_calls if toolset else 0):
                ep.cut_by_budget = True
            elif calls:
                pending[i] = calls
        if not pending:
            break
        order = list(pending)
        start = time.perf_counter()
        results = run_calls([pending[i] for i in order], [tools[i] for i in order],
                            [episodes[i].environment for i in order],
                            toolset.tool_timeout if toolset else 0.0)
        timings["tools_s"] += time.perf_counter() - start
        active = []
        for i, res in zip(order, results):
            ep = episodes[i]
            ep.tool_seconds += sum(r.seconds for r in res)
            ep.tool_calls += len(res)
            ep.tool_errors += sum(r.error is not None for r in res)
            tool_msgs = [{"role": "tool", "name": r.name, "content": r.content} for r in res]
            suffix = tool_turn_ids(tokenizer, tool_msgs, end_id, cache)
            if len(ep.completion_ids) + len(suffix) >= max_completion_length:
                ep.truncated = True  # no room for the results and a reply: stop here
                continue
            ep.messages += tool_msgs
            ep.completion_ids += suffix
            ep.mask += [0] * len(suffix)
            active.append(i)
    for ep, label in zip(episodes, labels):
        ep.env_reward = environment_reward(ep, toolset, label)
    return episodes


def environment_reward(ep: Episode, toolset: Toolset | None, label: str) -> float | None:
    """The environment's ``get_reward()`` for a finished episode, or None without one."""
    if toolset is None or ep.environment is None or \
            not toolset.environments[ep.env_name].has_reward:
        return None
    spec = toolset.environments[ep.env_name]
    try:
        value = ep.environment.get_reward()
    except (Exception, SystemExit) as e:  # noqa: BLE001 - user code: name the row
        raise AlignError(f"--environment {spec.origin}: get_reward raised "
                         f"{type(e).__name__}: {e} on {label}") from e
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise AlignError(f"--environment {spec.origin}: get_reward returned {value!r} on "
                         f"{label}; return a number (or None)") from None


def episode_metrics(episodes: Sequence[Episode]) -> dict[str, float]:
    """What a batch of rollouts did, under the names every run logs: tool calls and errors
    per episode, the share of calls that failed, turns, the shares cut by the budget and
    truncated, and the seconds spent in tools."""
    n = max(len(episodes), 1)
    calls = sum(e.tool_calls for e in episodes)
    errors = sum(e.tool_errors for e in episodes)
    return {
        "tools/calls_per_episode": calls / n,
        "tools/errors_per_episode": errors / n,
        "tools/error_frac": errors / calls if calls else 0.0,
        "tools/cut_by_budget_frac": sum(e.cut_by_budget for e in episodes) / n,
        "tools/seconds": sum(e.tool_seconds for e in episodes) / n,
        "rollout/turns": sum(e.turns for e in episodes) / n,
        "rollout/truncated_frac": sum(e.truncated for e in episodes) / n,
    }
