"""The chatml-tools template and --chat-template: rendering tool turns, the probe check that a
model's template can carry tool calls, and the errors."""

from __future__ import annotations

import copy

import pytest

from align import templates
from align.agents.parsing import PROBE, parse_tool_calls, require_tool_template
from align.errors import AlignError


@pytest.fixture()
def tok(tiny_tokenizer):
    return copy.deepcopy(tiny_tokenizer)


def test_chatml_tools_renders_calls_and_results_in_hermes_format(tok):
    templates.apply(tok, "chatml-tools")
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "6*7?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"type": "function", "function": {"name": "multiply", "arguments": {"a": 6, "b": 7}}},
                {"type": "function", "function": {"name": "multiply", "arguments": '{"a": 1, "b": 2}'}}]},
            {"role": "tool", "name": "multiply", "content": "42"},
            {"role": "tool", "name": "multiply", "content": "2"},
            {"role": "assistant", "content": "42."}]
    text = tok.apply_chat_template(msgs, tokenize=False)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n6*7?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "multiply", "arguments": {"a": 6, "b": 7}}\n'
        '</tool_call>\n<tool_call>\n{"name": "multiply", "arguments": {"a": 1, "b": 2}}\n'
        "</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n42\n</tool_response>\n"
        "<tool_response>\n2\n</tool_response><|im_end|>\n<|im_start|>assistant\n42.<|im_end|>\n")
    turn = text.split("<|im_start|>assistant\n")[1].split("<|im_end|>")[0]
    assert [c.arguments for c in parse_tool_calls(turn)[1]] == [{"a": 6, "b": 7}, {"a": 1, "b": 2}]


def test_chatml_tools_lists_tools_in_the_system_turn(tok):
    templates.apply(tok, "chatml-tools")
    schema = {"type": "function", "function": {"name": "f", "description": "d",
                                               "parameters": {"type": "object", "properties": {}}}}
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tools=[schema],
                                   tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\n# Tools\n")
    assert '\n{"type": "function", "function": {"name": "f"' in text
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    plain = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert plain == "<|im_start|>user\nhi<|im_end|>\n"  # no tools, no system: no system turn


def test_assistant_mask_covers_calls_not_results(tok):
    templates.apply(tok, "chatml-tools")
    out = tok.apply_chat_template(PROBE + [{"role": "assistant", "content": "done"}],
                                  tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    trained = tok.decode([t for t, m in zip(ids, mask) if m])
    assert trained == ('<tool_call>\n{"name": "probe_tool_a1", "arguments": {"probe_key_b2": '
                       '"probe_value_c3"}}\n</tool_call><|im_end|>done<|im_end|>')


def test_a_template_that_cannot_carry_tool_calls_is_refused_by_the_probe(tok):
    with pytest.raises(AlignError, match="tiny: its chat template writes tool calls in a format "
                                         "align cannot read back"):
        require_tool_template(tok, "tiny")  # the tiny model's own template: name args, not JSON
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(AlignError, match="drops the tool call's name, its arguments of a tool call"):
        require_tool_template(tok, "tiny")
    tok.chat_template = "{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('no') }}{% endif %}{% endfor %}"
    with pytest.raises(AlignError, match="cannot render a tool call and its result"):
        require_tool_template(tok, "tiny")
    tok.chat_template = None
    with pytest.raises(AlignError, match="has no chat template"):
        require_tool_template(tok, "tiny")
    templates.apply(tok, "chatml-tools")
    assert require_tool_template(tok, "tiny") == "hermes"


def test_chat_template_from_a_file_and_errors(tok, tmp_path):
    f = tmp_path / "t.jinja"
    f.write_text(templates.template_text("chatml-tools"))
    assert templates.apply(tok, str(f)).chat_template == f.read_text()
    with pytest.raises(AlignError, match="not a template align ships \\(chatml-tools\\)"):
        templates.apply(tok, "chatml-tool")
    with pytest.raises(AlignError, match="no such file"):
        templates.apply(tok, str(tmp_path / "none.jinja"))
    (tmp_path / "x.jinja").write_text("hello")
    with pytest.raises(AlignError, match="does not look like a Jinja chat template"):
        templates.apply(tok, str(tmp_path / "x.jinja"))


def test_chatml_needs_im_end_as_one_token(tok):
    from align.tiny import build_tokenizer

    plain = build_tokenizer()
    plain.add_special_tokens({"eos_token": "<|endoftext|>"})
    templates.apply(plain, "chatml-tools")
    assert plain.eos_token == "<|im_end|>"  # the template's turn end becomes EOS
    from transformers import AutoTokenizer  # noqa: F401  (a tokenizer without <|im_end|>)
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel({"a": 0, "<": 1, "|": 2, "[UNK]": 3}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    no_chatml = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="a")
    with pytest.raises(AlignError, match="the model's vocabulary has no <\\|im_end\\|> token"):
        templates.apply(no_chatml, "chatml-tools")
