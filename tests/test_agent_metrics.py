"""Agent metrics of GRPO runs with tools, read from the episodes TRL's tool loop returns."""

from __future__ import annotations

import pytest

from align.health.online import RepeatProbe, episode_stats


def _call(name="multiply", **args):
    return {"type": "function", "function": {"name": name, "arguments": args}}


# Four episodes as TRL 1.16's GRPOTrainer hands them to reward functions:
EPISODES = [
    # 1 call, answered: 2 assistant turns
    [{"role": "assistant", "content": "", "tool_calls": [_call(a=2, b=3)]},
     {"role": "tool", "name": "multiply", "content": "6"},
     {"role": "assistant", "content": "The answer is 6."}],
    # 2 calls in one turn, one failed (TRL writes str({'error': ...}))
    [{"role": "assistant", "content": "", "tool_calls": [_call(a=1, b=1), _call("divide")]},
     {"role": "tool", "name": "multiply", "content": "1"},
     {"role": "tool", "name": "divide", "content": "{'error': 'Tool divide not found.'}"},
     {"role": "assistant", "content": "1"}],
    # cut by the budget: the last turn's call never ran
    [{"role": "assistant", "content": "", "tool_calls": [_call(a=5, b=5)]},
     {"role": "tool", "name": "multiply", "content": "25"},
     {"role": "assistant", "content": "", "tool_calls": [_call(a=25, b=5)]}],
    # a call the parser could not read stays as text: malformed, no call counted
    [{"role": "assistant", "content": '<tool_call>{"name": "multiply", "arg</tool_call>'}],
]


def test_episode_stats_by_hand():
    s = episode_stats(EPISODES, "<tool_call>")
    # calls 1 + 2 + 2 + 0 = 5 over 4 episodes; errors 1; turns 2 + 2 + 2 + 1 = 7
    assert s["tools/calls_per_episode"] == pytest.approx(5 / 4)
    assert s["tools/errors_per_episode"] == pytest.approx(1 / 4)
    assert s["tools/error_frac"] == pytest.approx(1 / 5)
    assert s["rollout/turns"] == pytest.approx(7 / 4)
    assert s["tools/cut_by_budget_frac"] == pytest.approx(1 / 4)
    assert s["tools/malformed_frac"] == pytest.approx(1 / 4)


def test_episode_stats_empty_for_text_completions_and_no_calls():
    assert episode_stats(["plain text", "more"], "<tool_call>") == {}
    s = episode_stats([[{"role": "assistant", "content": "hi"}]], "<tool_call>")
    assert s["tools/calls_per_episode"] == 0 and s["tools/error_frac"] == 0.0


def test_probe_logs_agent_metrics_only_with_tools_and_never_scores():
    logged: dict[str, float] = {}
    out = RepeatProbe(call_marker="<tool_call>")(
        prompts=[None] * 4, completions=EPISODES, completion_ids=[[1, 2, 3, 4, 5]] * 4,
        log_metric=lambda k, v: logged.__setitem__(k, v))
    assert out == [None] * 4
    assert logged["tools/calls_per_episode"] == pytest.approx(5 / 4) and "rollout/repeat_frac" in logged
    logged.clear()
    RepeatProbe()(prompts=[None], completions=EPISODES[:1], completion_ids=[[1]],
                  log_metric=lambda k, v: logged.__setitem__(k, v))
    assert not any(k.startswith("tools/") for k in logged)
