"""docs/: every offline algorithm has a page whose flag table matches its config dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from align.config import arg
from align.docs_gen import DOCS_DIR, flag_table, render, stale_pages
from align.registry import ALGOS

PAGES = ("dpo", "kto", "cpo", "simpo", "orpo", "rm", "sft")


def test_flag_tables_are_up_to_date():
    stale = stale_pages()
    assert not stale, (f"stale flag tables in {[p.name for p in stale]}; "
                       "run `python -m align.docs_gen`")


@pytest.mark.parametrize("name", PAGES)
def test_each_algorithm_page_documents_every_flag(name):
    text = (DOCS_DIR / f"{name}.md").read_text(encoding="utf-8")
    assert f"<!-- flags:start {name} -->" in text
    for f in dataclasses.fields(ALGOS[name].config_cls):
        assert f"`--{f.name.replace('_', '-')}`" in text, f"{name}.md lacks --{f.name}"
    for section in ("## Formula" if name != "sft" else "## What it optimises", "## Data",
                    "## Example", "../data_formats/README.md", "1e-4"):
        assert section in text, f"{name}.md lacks {section!r}"


def test_shared_groups_are_documented_once():
    text = (DOCS_DIR / "cli.md").read_text(encoding="utf-8")
    for group in ("model", "lora", "data", "train"):
        assert f"<!-- flags:start {group} -->" in text


def test_render_rewrites_only_the_marked_region():
    @dataclass
    class Demo:
        width: int = arg(3, "How wide | really.", source="a paper")
        fast: bool = arg(False, "Go fast.")
        mode: str = arg("a", "Mode.", choices=("a", "b"))

    page = "intro\n<!-- flags:start demo -->\nold table\n<!-- flags:end -->\noutro\n"
    out = render(page, {"demo": Demo})
    assert out.startswith("intro\n") and out.endswith("<!-- flags:end -->\noutro\n")
    assert "old table" not in out and flag_table(Demo) in out
    assert "| `--width` | `3` | How wide \\| really. | a paper |" in out
    assert "| `--fast` / `--no-fast` | off | Go fast. | align default |" in out
    assert "One of: a, b." in out
    with pytest.raises(KeyError, match="unknown group"):
        render(page.replace("demo", "nope"), {"demo": Demo})
