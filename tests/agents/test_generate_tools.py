"""`align generate --tools --output` end to end: a tiny model taught by SFT on tool transcripts
calls the tool, the results come back, and the transcripts load back as SFT data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.algos.conftest import FAST
from tests.algos.test_sft_tools import transcript
from tests.conftest import run_cli, write_jsonl

TOOLS = Path(__file__).with_name("trl_style_tools.py")


@pytest.fixture(scope="module")
def tool_model(tmp_path_factory, tiny_lm):
    import pytest as _pytest

    tmp = tmp_path_factory.mktemp("tool_sft")
    data = write_jsonl(tmp / "tools.jsonl", [transcript(i) for i in range(35)])
    out = tmp / "sft"
    cap = _pytest.CaptureFixture  # noqa: F841 - run_cli needs capsys; call main directly
    from align.cli import main

    try:
        main([str(a) for a in ["sft", "--model", tiny_lm, "--dataset", data, "--chat-template",
                               "chatml-tools", "--output-dir", out, "--max-steps", "80",
                               "--learning-rate", "3e-3", *FAST]])
    except SystemExit as e:
        assert not e.code
    return out


def test_generate_with_tools_writes_transcripts_that_load_back(tmp_path, capsys, tool_model):
    from align.data import load_valid

    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": transcript(i)["messages"][:1]}
                                                 for i in range(3)])
    out = tmp_path / "t.jsonl"
    code, stdout, err = run_cli(["generate", "--model", tool_model, "--prompts", prompts,
                                 "--tools", f"{TOOLS}:multiply", "--output", out,
                                 "--max-new-tokens", "200", "--device", "cpu"], capsys)
    assert code == 0, err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 3
    for rec in records:
        assert rec["stats"]["tool_calls"] >= 1, rec  # the taught model calls the tool
        msgs = rec["messages"]
        for k, m in enumerate(msgs):  # each result is the tool run on the call's arguments
            if m["role"] == "tool" and "error" not in m["content"]:
                args = msgs[k - 1]["tool_calls"][0]["function"]["arguments"]
                assert m["content"] == str(args["a"] * args["b"])
        assert rec["tools"][0]["function"]["name"] == "multiply"
    assert "-> multiply(" in stdout and "<- multiply: " in stdout
    assert "tools/calls_per_episode" in stdout
    back = load_valid(out, "sft")  # the transcripts are SFT data again
    assert len(back.rows) == 3 and back.tool_calls >= 3


def test_generate_tools_errors_come_before_the_model_loads(tmp_path, capsys, tiny_lm):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "hi"}])
    code, _, err = run_cli(["generate", "--model", tiny_lm, "--prompts", prompts,
                            "--tools", f"{TOOLS}:nope"], capsys)
    assert code == 2 and f"--tools {TOOLS}:nope: " in err and "has no function 'nope'" in err
    code, _, err = run_cli(["generate", "--model", tiny_lm, "--prompts", prompts,
                            "--tools", f"{TOOLS}:multiply"], capsys)  # tiny's own template
    assert code == 2 and "cannot read back" in err and "--chat-template chatml-tools" in err
    code, _, err = run_cli(["generate", "--model", tiny_lm, "--prompts", prompts,
                            "--environment", f"a={TOOLS}:CounterEnv,b={TOOLS}:WordleLikeEnv",
                            "--chat-template", "chatml-tools"], capsys)
    assert code == 2 and "record 1: field 'environment'" in err
    code, _, err = run_cli(["generate", "--model", tiny_lm, "--prompts", prompts,
                            "--tools", f"{TOOLS}:multiply", "--max-tool-calls", "0"], capsys)
    assert code == 2 and "--max-tool-calls must be in [1, inf)" in err


def test_chat_with_tools_shows_calls_and_results(tool_model, capsys):
    from align.agents.args import AgentArgs
    from align.chat import agent_chat

    lines = iter(["What is 2 times 3?", "/exit"])
    agent_chat(str(tool_model), AgentArgs(tools=f"{TOOLS}:multiply"), system=None,
               chat_template=None, load_options={"device": "cpu"}, max_new_tokens=200,
               temperature=0.0, top_p=1.0, seed=0, read=lambda _: next(lines))
    out = capsys.readouterr().out
    assert "-> multiply(" in out and "<- multiply: " in out
