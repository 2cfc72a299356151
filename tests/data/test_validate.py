"""Every validation case of the dataset layer, each checked for the position and field named."""

from __future__ import annotations

import json

import pytest

from align.data import load
from tests.conftest import write_jsonl

U = lambda text: {"role": "user", "content": text}  # noqa: E731
A = lambda text: {"role": "assistant", "content": text}  # noqa: E731


def _errors(tmp_path, rows_or_text, fmt, name="d.jsonl"):
    p = tmp_path / name
    if isinstance(rows_or_text, (bytes, str)):
        p.write_bytes(rows_or_text if isinstance(rows_or_text, bytes) else rows_or_text.encode())
    else:
        write_jsonl(p, rows_or_text)
    return load(p, fmt)


def test_valid_pairwise_standard(tmp_path):
    r = _errors(tmp_path, [{"prompt": "p", "chosen": "a", "rejected": "b"}], "pairwise")
    assert r.ok and r.form == "standard" and len(r.rows) == 1


def test_valid_pairwise_conversational(tmp_path):
    r = _errors(tmp_path, [{"prompt": [U("q")], "chosen": [A("a")], "rejected": [A("b")]}],
                "pairwise")
    assert r.ok and r.form == "conversational"


def test_implicit_prompt_is_extracted_from_shared_messages(tmp_path):
    sys_msg = {"role": "system", "content": "be brief"}
    r = _errors(tmp_path, [{"chosen": [sys_msg, U("q"), A("good")],
                            "rejected": [sys_msg, U("q"), A("bad")]}], "pairwise")
    assert r.ok and r.implicit_prompt
    assert r.rows[0]["prompt"] == [sys_msg, U("q")]
    assert r.rows[0]["chosen"] == [A("good")] and r.rows[0]["rejected"] == [A("bad")]


@pytest.mark.parametrize("first_has_prompt", [True, False])
def test_mixed_explicit_and_implicit_prompts_are_an_error_naming_the_records(tmp_path,
                                                                             first_has_prompt):
    """A pair without a prompt among pairs with one would silently train on a prompt cut from
    its answers ("It is" / " 4." / " 5."): one file, one kind."""
    given = [{"prompt": "What is 2 + 2?", "chosen": "It is 4.", "rejected": "It is 5."},
             {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven."}]
    implicit = {"chosen": "It is 4.", "rejected": "It is 5."}
    rows = given + [implicit] if first_has_prompt else [implicit] + given
    r = _errors(tmp_path, rows, "pairwise")
    assert not r.ok
    odd = ["line 3"] if first_has_prompt else ["line 2", "line 3"]
    assert [(e.position, e.field) for e in r.errors] == [(line, "prompt") for line in odd]
    assert "but the first record (line 1)" in r.errors[0].message
    assert "give every record a 'prompt', or none" in r.errors[0].message
    assert r.implicit_prompt is not first_has_prompt  # what the kept records are


def test_implicit_prompt_multi_turn_keeps_earlier_assistant_turns(tmp_path):
    history = [U("q1"), A("a1"), U("q2")]
    r = _errors(tmp_path, [{"chosen": history + [A("good")], "rejected": history + [A("bad")]}],
                "pairwise")
    assert r.ok and r.rows[0]["prompt"] == history


def test_empty_file(tmp_path):
    r = _errors(tmp_path, "", "pairwise")
    assert not r.ok and "empty" in str(r.errors[0])


def test_whitespace_only_file_is_empty(tmp_path):
    r = _errors(tmp_path, "\n\n  \n", "prompt")
    assert not r.ok and "empty" in str(r.errors[0])


def test_non_utf8_bytes_name_the_line(tmp_path):
    data = b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n'
    r = _errors(tmp_path, data, "prompt")
    assert not r.ok
    assert "line 2" in str(r.errors[0]) and "UTF-8" in str(r.errors[0])
    assert len(r.rows) == 1


def test_line_that_is_not_json(tmp_path):
    r = _errors(tmp_path, '{"prompt": "ok"}\n{"prompt": "x",}\n', "prompt")
    assert [e.position for e in r.errors] == ["line 2"]
    assert "not valid JSON" in r.errors[0].message


def test_line_that_is_json_but_not_an_object(tmp_path):
    r = _errors(tmp_path, '["a", "b"]\n', "prompt")
    assert "line 1" in str(r.errors[0]) and "JSON object" in str(r.errors[0])


@pytest.mark.parametrize("row,field,found", [
    ({"prompt": "p", "rejected": "b"}, "chosen", "missing"),
    ({"prompt": "p", "chosen": None, "rejected": "b"}, "chosen", "null"),
    ({"prompt": "p", "chosen": "", "rejected": "b"}, "chosen", "empty"),
    ({"prompt": "p", "chosen": "   ", "rejected": "b"}, "chosen", "empty"),
    ({"prompt": 3, "chosen": "a", "rejected": "b"}, "prompt", "integer 3"),
    ({"prompt": "p", "chosen": {"text": "a"}, "rejected": "b"}, "chosen", "object"),
    ({"prompt": "p", "chosen": "a", "rejected": []}, "rejected", "empty list"),
])
def test_missing_null_empty_and_wrong_type_fields(tmp_path, row, field, found):
    r = _errors(tmp_path, [{"prompt": "p", "chosen": "a", "rejected": "b"}, row], "pairwise")
    assert len(r.errors) == 1, r.error_report()
    e = r.errors[0]
    assert e.position == "line 2" and e.field == field and found in e.message


@pytest.mark.parametrize("label,hint", [(1, True), (0, True), ("true", True), ("yes", True),
                                        (None, False), (2.5, False)])
def test_unpaired_label_must_be_a_json_boolean(tmp_path, label, hint):
    r = _errors(tmp_path, [{"prompt": "p", "completion": "c", "label": label}], "unpaired")
    assert not r.ok and r.errors[0].field == "label"
    assert ("write the JSON boolean" in r.errors[0].message) == hint


def test_unpaired_missing_label(tmp_path):
    r = _errors(tmp_path, [{"prompt": "p", "completion": "c"}], "unpaired")
    assert r.errors[0].field == "label" and "missing" in r.errors[0].message


def test_bad_chat_role_names_message_index(tmp_path):
    r = _errors(tmp_path, [{"prompt": [U("q")], "chosen": [{"role": "bot", "content": "a"}],
                            "rejected": [A("b")]}], "pairwise")
    assert r.errors[0].field == "chosen[0].role"
    assert "system, user, assistant, tool" in r.errors[0].message
    assert "write 'assistant'" in r.errors[0].message


def test_missing_role_key(tmp_path):
    r = _errors(tmp_path, [{"prompt": [{"content": "q"}]}], "prompt")
    assert r.errors[0].field == "prompt[0].role" and "no 'role' key" in r.errors[0].message


def test_sharegpt_messages_get_a_hint(tmp_path):
    r = _errors(tmp_path, [{"messages": [{"from": "human", "value": "q"},
                                         {"from": "gpt", "value": "a"}]}], "sft")
    assert "ShareGPT" in r.errors[0].message


@pytest.mark.parametrize("content,found", [(5, "integer 5"), (None, "null"),
                                           ([{"type": "text", "text": "x"}], "list")])
def test_non_string_content(tmp_path, content, found):
    r = _errors(tmp_path, [{"messages": [U("q"), {"role": "assistant", "content": content}]}],
                "sft")
    assert r.errors[0].field == "messages[1].content" and found in r.errors[0].message


def test_message_that_is_not_an_object(tmp_path):
    r = _errors(tmp_path, [{"messages": ["hello", A("a")]}], "sft")
    assert r.errors[0].field == "messages[0]"


def test_mix_of_standard_and_conversational_records(tmp_path):
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b"},
            {"prompt": [U("q")], "chosen": [A("a")], "rejected": [A("b")]}]
    r = _errors(tmp_path, rows, "pairwise")
    assert len(r.errors) == 1 and r.errors[0].position == "line 2"
    assert "first record (line 1) is standard" in r.errors[0].message


def test_mix_of_forms_inside_one_record(tmp_path):
    r = _errors(tmp_path, [{"prompt": "p", "chosen": [A("a")], "rejected": [A("b")]}],
                "pairwise")
    assert "mix standard and conversational" in r.errors[0].message


def test_reply_must_start_with_assistant_when_prompt_given(tmp_path):
    r = _errors(tmp_path, [{"prompt": [U("q")], "chosen": [U("q"), A("a")],
                            "rejected": [A("b")]}], "pairwise")
    assert r.errors[0].field == "chosen[0].role"


def test_prompt_must_not_end_with_assistant(tmp_path):
    r = _errors(tmp_path, [{"prompt": [U("q"), A("a")]}], "prompt")
    assert "end with a user" in r.errors[0].message


def test_implicit_prompt_without_shared_user_turn(tmp_path):
    r = _errors(tmp_path, [{"chosen": [U("q1"), A("a")], "rejected": [U("q2"), A("b")]}],
                "pairwise")
    assert r.errors[0].field == "prompt" and "add a 'prompt' field" in r.errors[0].message


def test_identical_chosen_and_rejected(tmp_path):
    r = _errors(tmp_path, [{"prompt": "p", "chosen": "same", "rejected": "same"}], "pairwise")
    assert "identical" in r.errors[0].message


def test_margin_must_be_a_number(tmp_path):
    r = _errors(tmp_path, [{"prompt": "p", "chosen": "a", "rejected": "b", "margin": "big"}],
                "pairwise")
    assert r.errors[0].field == "margin"


def test_prompt_format_keeps_extra_columns(tmp_path):
    r = _errors(tmp_path, [{"prompt": "2+2?", "solution": "4"}], "prompt")
    assert r.ok and r.rows[0]["solution"] == "4"


def test_prompt_format_accepts_messages_ending_in_user(tmp_path):
    r = _errors(tmp_path, [{"messages": [{"role": "system", "content": "s"}, U("q")]}], "prompt")
    assert r.ok and r.rows[0]["prompt"][-1] == U("q")


@pytest.mark.parametrize("row", [
    {"messages": [U("q"), A("a")]},
    {"prompt": "q", "completion": "a"},
    {"prompt": [U("q")], "completion": [A("a")]},
    {"text": "just text"},
])
def test_sft_accepts_its_layouts(tmp_path, row):
    assert _errors(tmp_path, [row], "sft").ok


def test_sft_messages_without_assistant(tmp_path):
    r = _errors(tmp_path, [{"messages": [U("q")]}], "sft")
    assert "assistant" in r.errors[0].message


def test_sft_nothing_recognisable(tmp_path):
    r = _errors(tmp_path, [{"question": "q"}], "sft")
    assert "expected 'messages'" in r.errors[0].message


def test_tool_messages_are_accepted(tmp_path):
    msgs = [U("weather?"), {"role": "assistant", "content": "",
                            "tool_calls": [{"type": "function", "function": {"name": "w"}}]},
            {"role": "tool", "content": "sunny"}, A("It is sunny.")]
    assert _errors(tmp_path, [{"messages": msgs}], "sft").ok


def test_at_most_20_errors_listed_then_a_count(tmp_path):
    rows = [{"prompt": "p", "chosen": None, "rejected": "b"} for _ in range(30)]
    r = _errors(tmp_path, rows, "pairwise")
    report = r.error_report()
    assert len(r.errors) == 30
    assert report.count("field 'chosen'") == 20
    assert "... and 10 more errors (30 in all)" in report


def test_errors_are_in_file_order(tmp_path):
    text = ('{"prompt": "a", "chosen": null, "rejected": "b"}\n' "not json\n"
            '{"prompt": "a", "chosen": "c", "rejected": null}\n')
    r = _errors(tmp_path, text, "pairwise")
    assert [e.position for e in r.errors] == ["line 1", "line 2", "line 3"]


def test_blank_lines_are_skipped_and_lines_still_counted(tmp_path):
    text = '{"prompt": "a"}\n\n{"prompt": ""}\n'
    r = _errors(tmp_path, text, "prompt")
    assert r.errors[0].position == "line 3"


def test_utf8_bom_is_accepted(tmp_path):
    r = _errors(tmp_path, b'\xef\xbb\xbf{"prompt": "a"}\n', "prompt")
    assert r.ok


def test_unicode_text_is_fine(tmp_path):
    r = _errors(tmp_path, [{"prompt": "Qu'est-ce que c'est ? 日本語", "chosen": "é", "rejected": "ü"}],
                "pairwise")
    assert r.ok


def test_json_roundtrip_of_error_text_is_plain(tmp_path):
    r = _errors(tmp_path, [{"prompt": None}], "prompt")
    assert json.dumps(str(r.errors[0]))  # plain text, printable


@pytest.mark.parametrize("line,expected", [
    ('{"prompt": "a", "chosen": "b", "rejected": "c", "margin": NaN}', "NaN is not a JSON value"),
    ('{"prompt": "a", "prompt": "b", "chosen": "c", "rejected": "d"}', "appears twice"),
    ('{"prompt": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply"),
])
def test_json_that_python_accepts_but_json_does_not(tmp_path, line, expected):
    r = _errors(tmp_path, line + "\n", "pairwise")
    assert r.errors[0].position == "line 1" and expected in r.errors[0].message


def test_lone_surrogate_is_not_text(tmp_path):
    r = _errors(tmp_path, '{"prompt": "\\ud83d oops"}\n', "prompt")
    assert r.errors[0].field == "prompt" and "lone surrogate" in r.errors[0].message


def test_lone_surrogate_in_message_content(tmp_path):
    r = _errors(tmp_path, '{"messages": [{"role": "user", "content": "q"}, '
                          '{"role": "assistant", "content": "\\udc00"}]}\n', "sft")
    assert r.errors[0].field == "messages[1].content"


def test_utf16_file_gets_a_hint(tmp_path):
    r = _errors(tmp_path, '{"prompt": "a"}\n'.encode("utf-16"), "prompt")
    assert "UTF-16" in r.errors[0].message


def test_nan_margin_from_a_typed_source(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "p", "chosen": "a", "rejected": "b",
                                          "margin": float("nan")}]), p)
    r = load(p, "pairwise")
    assert r.errors[0].field == "margin" and "finite" in r.errors[0].message


# ---- layouts of public datasets ------------------------------------------------------------

def test_sft_rows_with_prompt_and_messages_take_the_messages(tmp_path):
    r = _errors(tmp_path, [{"prompt": "q", "prompt_id": "x", "messages": [U("q"), A("a")]}],
                "sft")
    assert r.ok and r.rows[0] == {"prompt_id": "x", "messages": [U("q"), A("a")]}
    assert any("not passed to training: 'prompt'" in n for n in r.notes)


def test_sft_layouts_must_not_change_within_a_file(tmp_path):
    r = _errors(tmp_path, [{"messages": [U("q"), A("a")]},
                           {"prompt": [U("q")], "completion": [A("a")]}], "sft")
    assert r.errors[0].position == "line 2" and "one layout throughout" in r.errors[0].message


def test_pairwise_rows_drop_keys_trl_would_read_as_another_type(tmp_path):
    r = _errors(tmp_path, [{"prompt": "q", "chosen": "a", "rejected": "b", "messages": [U("q")],
                            "score": 1}], "pairwise")
    assert r.ok and r.rows[0] == {"prompt": "q", "chosen": "a", "rejected": "b", "score": 1}


def test_openai_tool_calls_with_null_content_and_legacy_function_role(tmp_path):
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "w", "arguments": '{"c": 1}'}}]}
    legacy = {"role": "assistant", "content": None,
              "function_call": {"name": "w", "arguments": "{}"}}
    rows = [{"messages": [U("weather?"), call, {"role": "tool", "tool_call_id": "c1",
                                                "content": "sun"}, A("Sunny.")]},
            {"messages": [U("weather?"), legacy, {"role": "function", "name": "w",
                                                  "content": "rain"}, A("Rain.")]}]
    r = _errors(tmp_path, rows, "sft")
    assert r.ok, r.error_report()
    assert r.tool_calls == 2
    second = r.rows[1]["messages"]
    # arguments written as JSON text are read as the object they spell (templates render
    # objects), the call's id kept
    assert second[1]["tool_calls"] == [{"type": "function",
                                        "function": {"name": "w", "arguments": {}}}]
    assert r.rows[0]["messages"][1]["tool_calls"] == [
        {"type": "function", "function": {"name": "w", "arguments": {"c": 1}}, "id": "c1"}]
    assert "function_call" not in second[1] and second[2]["role"] == "tool"
    assert any("legacy role 'function' were read as role 'tool'" in n for n in r.notes)


@pytest.mark.parametrize("calls,field", [
    ([{"type": "function", "function": {"name": "w", "arguments": "{not json"}}],
     "messages[1].tool_calls[0].function.arguments"),
    ([{"type": "function", "function": {"arguments": "{}"}}], "messages[1].tool_calls[0]"),
    ([], "messages[1].tool_calls"),
])
def test_bad_tool_calls_are_named(tmp_path, calls, field):
    r = _errors(tmp_path, [{"messages": [U("q"), {"role": "assistant", "content": None,
                                                  "tool_calls": calls}]}], "sft")
    assert r.errors[0].field == field


def test_a_system_column_becomes_the_system_message(tmp_path):
    r = _errors(tmp_path, [{"system": "Be brief.", "prompt": "q", "chosen": "a", "rejected": "b"},
                           {"system": "", "prompt": "q2", "chosen": "c", "rejected": "d"}],
                "pairwise")
    assert r.ok and r.form == "conversational"
    assert r.rows[0]["prompt"] == [{"role": "system", "content": "Be brief."}, U("q")]
    assert r.rows[1]["prompt"] == [U("q2")] and r.rows[1]["chosen"] == [A("c")]


def test_alpaca_layout_is_a_user_turn_and_a_reply(tmp_path):
    r = _errors(tmp_path, [{"instruction": "Add.", "input": "2 and 3", "output": "5"},
                           {"instruction": "Say hi.", "input": "", "output": "hi"}], "sft")
    assert r.ok and r.rows[0] == {"prompt": [U("Add.\n\n2 and 3")], "completion": [A("5")]}
    assert r.rows[1]["prompt"] == [U("Say hi.")]


def test_missing_fields_list_the_columns_and_propose_a_mapping(tmp_path):
    r = _errors(tmp_path, [{"question": "q", "response_chosen": "a", "response_rejected": "b"}],
                "pairwise")
    assert r.hint == ("the source's columns: question, response_chosen, response_rejected; try "
                      "--columns prompt=question,chosen=response_chosen,rejected=response_rejected")


def test_pairwise_mapping_that_leaves_a_label_unused_warns(tmp_path):
    p = write_jsonl(tmp_path / "shp.jsonl", [{"history": "q", "human_ref_A": "a",
                                              "human_ref_B": "b", "labels": 0}])
    r = load(p, "pairwise", "prompt=history,chosen=human_ref_A,rejected=human_ref_B")
    assert r.ok  # the mapping is well-formed; the warning says what it loses
    assert r.notes[0].startswith("warning: --columns maps chosen/rejected but leaves the column "
                                 "'labels' unused")
    assert "align data convert" in r.notes[0]


@pytest.mark.parametrize("row,fmt,command", [
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}, "sft",
     "--to sft"),
    ({"history": "q", "human_ref_A": "a", "human_ref_B": "b", "labels": 1}, "pairwise",
     "--to pairwise"),
    ({"prompt": "q", "response_0": "a", "response_1": "b", "better_response_id": 0},
     "pairwise", "--to pairwise"),
    ({"instruction": "q", "completions": [{"response": "a", "overall_score": 1}]}, "pairwise",
     "--to pairwise"),
    ({"prompt": "q", "chosen": "a", "rejected": "b"}, "unpaired", "--to unpaired"),
])
def test_layouts_to_convert_name_the_command(tmp_path, row, fmt, command):
    r = _errors(tmp_path, [row, row], fmt)
    assert len(r.errors) == 1 and r.errors[0].position is None
    assert f"align data convert {tmp_path / 'd.jsonl'} {command}" in r.errors[0].message


def test_flat_hf_tool_calls_are_read_in_openai_layout(tmp_path):
    """Some Hugging Face datasets write calls as {"name", "arguments"} without the
    "function" wrapper; they train the same as OpenAI's layout."""
    flat = {"role": "assistant", "content": "", "tool_calls": [
        {"name": "add", "arguments": {"a": 1, "b": 2}}, {"name": "neg", "arguments": '{"x": 3}'}]}
    r = _errors(tmp_path, [{"messages": [U("sum?"), flat, {"role": "tool", "name": "add",
                                                           "content": "3"}, A("3")]}], "sft")
    assert r.ok, r.error_report()
    assert r.rows[0]["messages"][1]["tool_calls"] == [
        {"type": "function", "function": {"name": "add", "arguments": {"a": 1, "b": 2}}},
        {"type": "function", "function": {"name": "neg", "arguments": {"x": 3}}}]


@pytest.mark.parametrize("call,field,words", [
    ({"name": "add", "arguments": "[1, 2]"}, "messages[1].tool_calls[0].arguments",
     "expected a JSON object, found a list"),
    ({"name": "add", "arguments": "{oops"}, "messages[1].tool_calls[0].arguments",
     "found text that is not JSON"),
    ({"type": "function", "function": {"name": "add", "arguments": 3}},
     "messages[1].tool_calls[0].function.arguments", "expected a JSON object, found"),
])
def test_bad_tool_call_arguments_name_file_line_and_field(tmp_path, call, field, words):
    msgs = [U("sum?"), {"role": "assistant", "content": None, "tool_calls": [call]}, A("3")]
    r = _errors(tmp_path, [{"messages": [U("x"), A("y")]}, {"messages": msgs}], "sft")
    e = r.errors[0]
    assert (e.field, e.position) == (field, "line 2") and words in e.message, str(e)
