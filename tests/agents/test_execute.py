"""Running tool calls: errors of every kind become a message in the tool turn and are counted;
a hanging tool costs its timeout, not the run; rollouts' calls run in parallel."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from align.agents.args import AgentArgs
from align.agents.execute import call_one, run_calls
from align.agents.parsing import ToolCall, parse_tool_calls
from align.agents.tools import load_toolset

TOOLS = Path(__file__).with_name("trl_style_tools.py")


@pytest.fixture(scope="module")
def tools():
    ts = load_toolset(AgentArgs(tools=f"{TOOLS}:multiply,async_add,explode,hang"))
    return {t.name: t for t in ts.tools}


def call(text):
    return parse_tool_calls(f"<tool_call>{text}</tool_call>")[1][0]


def error_of(result):
    assert result.error is not None
    assert json.loads(result.content) == {"error": result.error}  # what the model reads
    return result.error


def test_a_good_call_returns_the_tools_value_as_text(tools):
    r = call_one(call('{"name": "multiply", "arguments": {"a": 6, "b": 7}}'), tools, None, 5)
    assert (r.name, r.content, r.error) == ("multiply", "42", None)


def test_an_async_tool_is_awaited(tools):
    r = call_one(ToolCall("async_add", {"a": 1.5, "b": 2}), tools, None, 5)
    assert r.content == "3.5" and r.error is None


def test_malformed_json_is_answered_with_its_error(tools):
    r = call_one(call('{"name": "multiply", "arguments": {"a": 6'), tools, None, 5)
    assert r.name == "invalid" and "not valid JSON" in error_of(r)


def test_unknown_tool_names_the_known_ones(tools):
    r = call_one(ToolCall("divide", {"a": 1}), tools, None, 5)
    assert error_of(r) == ("unknown tool 'divide'; the tools are: async_add, explode, hang, "
                           "multiply")


@pytest.mark.parametrize("arguments, words", [
    ({"a": 6}, "missing a required argument: 'b'"),
    ({"a": 6, "b": 7, "c": 8}, "unexpected keyword argument 'c'"),
    ({"a": "six", "b": 7}, 'a must be integer, got "six"'),
    ({"a": True, "b": 7}, "a must be integer, got true"),
    ({"a": 6.5, "b": 7}, "a must be integer, got 6.5"),
])
def test_bad_arguments_say_which(tools, arguments, words):
    r = call_one(ToolCall("multiply", arguments), tools, None, 5)
    assert error_of(r).startswith("bad arguments for multiply: ") and words in r.error


def test_a_number_argument_takes_an_integer(tools):
    assert call_one(ToolCall("async_add", {"a": 1, "b": 2}), tools, None, 5).content == "3"


def test_a_raising_tool_gives_its_exception(tools):
    r = call_one(ToolCall("explode", {"reason": "disk full"}), tools, None, 5)
    assert error_of(r) == "explode raised RuntimeError: boom: disk full"


def test_a_hanging_tool_times_out_and_the_run_goes_on(tools):
    start = time.perf_counter()
    r = call_one(ToolCall("hang", {"seconds": 30}), tools, None, 0.3)
    assert time.perf_counter() - start < 5
    assert error_of(r) == "hang did not answer within 0.3 s (--tool-timeout)"
    assert 0.25 < r.seconds < 5


def test_rollouts_run_in_parallel_and_calls_in_order(tools):
    calls = [[ToolCall("hang", {"seconds": 0.5}), ToolCall("multiply", {"a": i, "b": 2})]
             for i in range(6)]
    start = time.perf_counter()
    out = run_calls(calls, [tools] * 6, [None] * 6, timeout=5)
    took = time.perf_counter() - start
    assert took < 2.5, f"6 rollouts sleeping 0.5 s each took {took:.1f} s: not parallel"
    assert [[r.content for r in rs] for rs in out] == [["woke up", str(2 * i)] for i in range(6)]


def test_run_calls_mixes_every_failure_without_raising(tools):
    batch = [[call("{oops"), ToolCall("nope", {})],
             [ToolCall("hang", {"seconds": 10}), ToolCall("multiply", {"a": 2, "b": 3})],
             [],
             [ToolCall("explode", {"reason": "x"})]]
    out = run_calls(batch, [tools] * 4, [None] * 4, timeout=0.2)
    assert [len(r) for r in out] == [2, 2, 0, 1]
    assert [r.error is not None for rs in out for r in rs] == [True, True, True, False, True]
    assert out[1][1].content == "6"  # the call after a timed-out one still runs
