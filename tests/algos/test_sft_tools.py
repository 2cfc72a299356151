"""SFT on tool-call transcripts: the loss on assistant turns only (tool calls included, tool
results excluded), OpenAI and flat HF layouts, arguments as objects or JSON text, and the
--chat-template saved with the model."""

from __future__ import annotations

import json

import pytest

from tests.algos.conftest import FAST, assert_loss_falls, make_config
from tests.conftest import run_cli, write_jsonl


MULTIPLY = {"type": "function", "function": {
    "name": "multiply", "description": "Multiplies two integers.",
    "parameters": {"type": "object", "properties": {
        "a": {"type": "integer", "description": "The first integer."},
        "b": {"type": "integer", "description": "The second integer."}},
        "required": ["a", "b"]}, "return": {"type": "integer", "description":
                                            "The product of the two integers."}}}


def transcript(i: int, layout: str = "openai") -> dict:
    """A row of SFT data: a multiplication answered through the multiply tool, with the
    row's ``tools`` (the schemas the chat template lists, as TRL's SFTTrainer reads them)."""
    a, b = 2 + i % 7, 3 + i % 5
    args = {"a": a, "b": b}
    if layout == "openai":  # OpenAI: wrapper, id, arguments as JSON text, content null
        call = {"id": f"c{i}", "type": "function",
                "function": {"name": "multiply", "arguments": json.dumps(args)}}
        content = None
    else:  # flat HF layout, arguments as an object
        call = {"name": "multiply", "arguments": args}
        content = ""
    return {"messages": [
        {"role": "user", "content": f"What is {a} times {b}?"},
        {"role": "assistant", "content": content, "tool_calls": [call]},
        {"role": "tool", "name": "multiply", "content": str(a * b)},
        {"role": "assistant", "content": f"{a * b}."}], "tools": [MULTIPLY]}


def test_loss_mask_covers_assistant_turns_and_calls_not_tool_results(tmp_path, tiny_lm):
    """The hand-built transcript below: the labels are exactly the two assistant turns,
    the call written as chatml-tools writes it, each with its end token."""
    from align.algos import sft

    row = {"messages": [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "What is 6 times 7?"},
        {"role": "assistant", "content": "Let me see.", "tool_calls": [
            {"type": "function", "function": {"name": "multiply", "arguments": '{"a": 6, "b": 7}'}}]},
        {"role": "tool", "name": "multiply", "content": "42"},
        {"role": "assistant", "content": "It is 42."}]}
    cfg, data = make_config("sft", tiny_lm, write_jsonl(tmp_path / "t.jsonl", [row]), tmp_path / "o")
    cfg.model.chat_template = "chatml-tools"
    trainer, tok = sft.build_trainer(cfg, data)
    example = trainer.train_dataset[0]
    labels = trainer.data_collator([example])["labels"][0].tolist()
    ids = example["input_ids"]
    trained = [t for t, lab in zip(ids, labels) if lab != -100]
    assert tok.decode(trained) == ('Let me see.\n<tool_call>\n{"name": "multiply", "arguments": '
                                   '{"a": 6, "b": 7}}\n</tool_call><|im_end|>It is 42.<|im_end|>')
    left_out = tok.decode([t for t, lab in zip(ids, labels) if lab == -100])
    assert "<tool_response>\n42\n</tool_response>" in left_out and "What is 6 times 7?" in left_out
    # every label is the token itself where it counts (no shifted or foreign ids)
    assert all(lab in (-100, t) for t, lab in zip(ids, labels))


@pytest.mark.parametrize("layout", ["openai", "flat"])
def test_sft_on_tool_transcripts_learns_and_saves_the_template(tmp_path, capsys, tiny_lm, layout):
    from transformers import AutoTokenizer

    from align.templates import template_text

    data = write_jsonl(tmp_path / "tools.jsonl", [transcript(i, layout) for i in range(64)])
    out = tmp_path / "sft"
    code, _, err = run_cli(["sft", "--model", tiny_lm, "--dataset", data, "--chat-template",
                            "chatml-tools", "--output-dir", out, "--max-steps", "20",
                            "--learning-rate", "3e-3", *FAST], capsys)
    assert code == 0, err
    assert "warning" not in err.lower()  # chatml-tools marks assistant turns
    assert_loss_falls(out, min_drop=0.5)
    saved = AutoTokenizer.from_pretrained(out)
    assert saved.chat_template == template_text("chatml-tools")
    assert saved.eos_token == "<|im_end|>"


def test_a_template_that_drops_tool_calls_is_refused_before_the_model_loads(tmp_path, capsys,
                                                                              tiny_lm):
    bad = tmp_path / "plain.jinja"
    bad.write_text("{%- for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + "
                   "(m['content'] or '') + '<|im_end|>\\n' }}{%- endfor %}")
    data = write_jsonl(tmp_path / "tools.jsonl", [transcript(i) for i in range(4)])
    code, _, err = run_cli(["sft", "--model", tiny_lm, "--dataset", data, "--chat-template", bad,
                            "--output-dir", tmp_path / "o", *FAST], capsys)
    assert code == 2
    assert "4 assistant messages that call tools" in err
    assert "drops the tool call's name, its arguments" in err and "chatml-tools" in err
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_unknown_chat_template_is_exit_2(tmp_path, capsys, tiny_lm):
    data = write_jsonl(tmp_path / "tools.jsonl", [transcript(0)])
    code, _, err = run_cli(["sft", "--model", tiny_lm, "--dataset", data, "--chat-template",
                            "chatml-tool", "--output-dir", tmp_path / "o", *FAST], capsys)
    assert code == 2 and "--chat-template 'chatml-tool': not a template align ships" in err
