"""docs/: flag tables and the CLI reference match the code; every algorithm, flag group and
command is documented; the user guides exist and are linked from the README."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from align.config import arg
from align.docs_gen import DOCS_DIR, commands, flag_table, render, stale_pages
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
    for group in ("model", "lora", "data", "train", "health"):
        assert text.count(f"<!-- flags:start {group} -->") == 1


def test_every_algorithm_has_a_generated_flag_table():
    text = "".join(p.read_text(encoding="utf-8") for p in DOCS_DIR.glob("*.md"))
    for name in ALGOS:
        assert f"<!-- flags:start {name} -->" in text, f"no generated flag table for {name}"


def test_cli_reference_covers_every_command():
    text = (DOCS_DIR / "cli.md").read_text(encoding="utf-8")
    for name, (path, _) in commands().items():
        assert f"<!-- cli:start {name} -->" in text, f"docs/cli.md does not document `{path}`"
    for name in ("rlhf", "sft", "algos", "data-validate", "data-inspect", "data-convert",
                 "quickstart", "plot", "merge-lora"):
        assert name in commands()


def test_cli_region_renders_usage_help_and_options():
    page = "<!-- cli:start data-validate -->\nstale region text\n<!-- cli:end -->\n"
    out = render(page)
    assert "align data validate [OPTIONS] PATH" in out and "stale region text" not in out
    assert "| `--format` | — | Expected format. One of: prompt, pairwise, unpaired, sft. |" in out
    assert "--help" not in out
    rlhf = render("<!-- cli:start rlhf -->\n<!-- cli:end -->\n")
    assert "`--dry-run`" in rlhf and "`--beta`" not in rlhf  # group flags live in the tables
    with pytest.raises(KeyError, match="unknown command"):
        render("<!-- cli:start nope -->\n<!-- cli:end -->\n")


GUIDES = ("getting-started.md", "choosing.md", "memory.md", "troubleshooting.md", "cli.md",
          "data-formats.md", "ppo-tricks.md", "real-model.md", "architecture.md", "agents.md")


def test_user_guides_exist_and_the_readme_links_them():
    readme = (DOCS_DIR.parent / "README.md").read_text(encoding="utf-8")
    for guide in GUIDES:
        assert (DOCS_DIR / guide).is_file(), guide
        assert f"docs/{guide}" in readme, f"README.md does not link docs/{guide}"


def test_relative_links_in_docs_point_to_existing_files():
    import re

    for page in [*DOCS_DIR.glob("*.md"), DOCS_DIR.parent / "README.md",
                 DOCS_DIR.parent / "recipes" / "README.md", DOCS_DIR.parent / "CONTRIBUTING.md"]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links missing {target}"


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


def test_memory_page_shows_the_estimate_scripts_tables(capsys):
    import runpy

    runpy.run_path(str(DOCS_DIR.parent / "scripts" / "memory_estimate.py"), run_name="__main__")
    page = (DOCS_DIR / "memory.md").read_text(encoding="utf-8")
    for line in capsys.readouterr().out.splitlines():
        assert line in page, f"docs/memory.md lacks {line!r}: rerun scripts/memory_estimate.py"
    assert "computed estimates, not measurements" in page


def test_flag_table_quotes_the_corrected_rollout_ratios():
    """docs/benchmarks.md's flag table quotes the rollout ratios of the second lease (full
    warm-ups), not the first lease's 3.6x that the page itself corrected."""
    import json
    import re

    bench = json.loads((DOCS_DIR / "bench/h200-2026-11-26-b/rollout-0.5b.json").read_text())
    engines = bench["ppo"][0]["rollout"]
    page = (DOCS_DIR / "benchmarks.md").read_text(encoding="utf-8")
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(--[a-z-]+)`.*$", page, re.M)}
    for flag, engine in (("--rollout-generate-batch-size", "align_hf"),
                         ("--compile-rollout", "align_hf_compiled")):
        quoted = re.findall(r"([\d.]+)x plain `generate`", rows[flag])
        assert quoted == [f"{engines[engine]['speedup_vs_plain']:.2f}"], (flag, quoted)


def test_code_cites_only_files_inside_the_repo():
    """A comment or docstring that points to a page points to one a reader of the repository
    has (docs/..., README.md, CONTRIBUTING.md), not to notes kept elsewhere."""
    import re

    root = DOCS_DIR.parent
    written_by_scripts = {"OUT/tables.md"}  # a script's output, named in its usage
    missing = []
    for folder in ("align", "scripts", "tests", "recipes"):
        for path in (root / folder).rglob("*"):
            if path.suffix not in (".py", ".sh") or "__pycache__" in path.parts:
                continue
            for cited in re.findall(r"[\w./-]+\.md\b", path.read_text(encoding="utf-8")):
                if cited in written_by_scripts:
                    continue
                if not any((base / cited).exists() for base in (root, DOCS_DIR, path.parent)):
                    missing.append(f"{path.relative_to(root)}: {cited}")
    assert not missing, missing
