"""Every public dataset layout of tests/data/public_layouts.py as its users have it: through
`align data convert` (when its docs row says so), `align data validate`, `align data inspect`
(the detected layout and what the first records became), and a 2-step training run on the
tiny model with the documented command."""

from __future__ import annotations

import math

import pytest

from align.metrics import read_metrics
from tests.conftest import run_cli
from tests.data.public_layouts import LAYOUTS, Layout

FAST = ["--max-steps", "2", "--per-device-train-batch-size", "4", "--report-to", "none",
        "--save-steps", "1000", "--learning-rate", "1e-3"]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda lay: lay.name)
def test_public_layout_validates_and_trains_two_steps(layout: Layout, tmp_path, capsys, tiny_lm):
    path = layout.write(tmp_path / "download")
    if layout.convert is not None:
        converted = tmp_path / "converted.jsonl"
        code, out, err = run_cli(["data", "convert", path, "-o", converted, *layout.convert],
                                 capsys)
        assert code == 0, err
        assert "wrote 8 " in out, out
        path = converted
    code, out, err = run_cli(["data", "validate", path, "--format", layout.fmt, *layout.flags],
                             capsys)
    assert code == 0, err
    assert out.startswith("OK ")

    from align.data import load

    flags = dict(zip(layout.flags[::2], layout.flags[1::2]))
    result = load(path, layout.fmt, flags.get("--columns"), split=flags.get("--dataset-split"),
                  config=flags.get("--dataset-config"))
    assert result.ok and result.layout() == layout.layout
    for index, fields in layout.expect.items():
        row = result.rows[index]
        for name, value in fields.items():
            assert row[name] == value, (index, name, row)

    code, out, _ = run_cli(["data", "inspect", path, "--format", layout.fmt, *layout.flags,
                            "-n", "1"], capsys)
    assert code == 0 and f"layout: {layout.layout}" in out and "record 1 became:" in out

    command = ["sft"] if layout.algo == "sft" else ["rlhf", "--algo", layout.algo]
    run_dir = tmp_path / "run"
    code, _, err = run_cli([*command, "--model", tiny_lm, "--dataset", path, *layout.flags,
                            "--output-dir", run_dir, *FAST, *layout.train], capsys)
    assert code == 0, err[-3000:]
    losses = [r["loss"] for r in read_metrics(run_dir) if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses), losses


def test_tool_calls_need_a_chat_template_that_renders_them(tmp_path, capsys, tiny_lm):
    """A template without tool calls would train those turns as empty replies: refused."""
    import shutil

    from transformers import AutoTokenizer

    from tests.data.public_layouts import openai_chat

    model = tmp_path / "model"
    shutil.copytree(tiny_lm, model)
    tok = AutoTokenizer.from_pretrained(model)
    tok.chat_template = ("{%- for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + "
                         "(m['content'] or '') + '<|im_end|>\\n' }}{%- endfor %}")
    tok.save_pretrained(model)
    code, _, err = run_cli(["sft", "--model", model, "--dataset", openai_chat(tmp_path),
                            "--output-dir", tmp_path / "run", *FAST], capsys)
    assert code == 2
    assert "6 assistant messages that call tools (tool_calls), but the chat template" in err


def test_docs_table_gives_the_commands_the_tests_run():
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "data-formats.md"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in
            page.read_text(encoding="utf-8").split("## Public datasets")[1].splitlines()
            if line.startswith("| ") and " | " in line}
    for layout in LAYOUTS:
        row = rows.get(layout.doc_row)
        assert row is not None, f"docs/data-formats.md has no row for {layout.doc_row}"
        flags = " ".join(layout.flags)
        assert flags in row, (layout.name, flags)
        if layout.convert is not None:
            assert "align data convert " in row and " ".join(layout.convert) in row
        elif layout.doc is None:
            command = "align sft" if layout.algo == "sft" else f"--algo {layout.algo}"
            assert command in row, (layout.name, command)
