"""Tool calls read out of generated text (Hermes format): every malformed case becomes a call
with an error the model is shown, never an exception."""

from __future__ import annotations

import pytest

from align.agents.parsing import assistant_message, parse_tool_calls, read_call


def test_one_call_and_its_content_are_split():
    content, calls = parse_tool_calls('Let me check.\n<tool_call>\n{"name": "multiply", '
                                      '"arguments": {"a": 3, "b": 4}}\n</tool_call>')
    assert content == "Let me check."
    assert [(c.name, c.arguments, c.error) for c in calls] == [("multiply", {"a": 3, "b": 4}, None)]


def test_several_calls_are_read_in_order():
    text = ('<tool_call>{"name": "a", "arguments": {}}</tool_call>\n'
            '<tool_call>{"name": "b", "arguments": {"x": 1}}</tool_call>')
    _, calls = parse_tool_calls(text)
    assert [c.name for c in calls] == ["a", "b"] and calls[1].arguments == {"x": 1}


def test_text_without_calls_is_all_content():
    assert parse_tool_calls("  The answer is 12.  ") == ("The answer is 12.", [])


def test_arguments_as_json_text_are_read_as_an_object():
    call = read_call('{"name": "f", "arguments": "{\\"a\\": 1}"}')
    assert call.error is None and call.arguments == {"a": 1}


def test_llama_parameters_spelling_and_missing_arguments():
    assert read_call('{"name": "f", "parameters": {"a": 2}}').arguments == {"a": 2}
    assert read_call('{"name": "f"}').arguments == {}


@pytest.mark.parametrize("body, words", [
    ('{"name": "f", "arguments": {"a": 1}', "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"arguments": {"a": 1}}', 'no "name"'),
    ('{"name": "", "arguments": {}}', 'no "name"'),
    ('{"name": 3, "arguments": {}}', 'no "name"'),
    ('{"name": "f", "arguments": [1, 2]}', '"arguments" of f must be a JSON object'),
    ('{"name": "f", "arguments": "not json"}', '"arguments" of f is text that is not JSON'),
])
def test_malformed_call_becomes_an_error_not_an_exception(body, words):
    _, calls = parse_tool_calls(f"<tool_call>{body}</tool_call>")
    assert len(calls) == 1 and words in calls[0].error and calls[0].arguments is None
    assert calls[0].raw == body


def test_unclosed_call_is_an_error():
    content, calls = parse_tool_calls('Sure <tool_call>{"name": "f", "argu')
    assert content == "Sure"
    assert len(calls) == 1 and "no closing </tool_call>" in calls[0].error


def test_assistant_message_keeps_malformed_text_and_drops_tool_calls():
    good = '<tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call>'
    msg, calls = assistant_message(good)
    assert msg == {"role": "assistant", "content": "",
                   "tool_calls": [{"type": "function",
                                   "function": {"name": "f", "arguments": {"a": 1}}}]}
    bad = good + "<tool_call>oops</tool_call>"
    msg, calls = assistant_message(bad)
    assert msg == {"role": "assistant", "content": bad} and len(calls) == 2
    assert calls[0].error is None and calls[1].error
