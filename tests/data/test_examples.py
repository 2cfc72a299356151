"""Every example in data_formats/ validates as the format its name says."""

from pathlib import Path

import pytest

from align.data import load

ROOT = Path(__file__).resolve().parents[2] / "data_formats"
FILES = sorted(p for p in ROOT.iterdir() if p.suffix in (".jsonl", ".json", ".csv", ".parquet")
               and not p.name.startswith("ranked"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_example_validates(path):
    fmt = path.name.split("_")[0].split(".")[0]
    result = load(path, fmt)
    assert result.ok, result.error_report()
    assert len(result.rows) >= 2


def test_examples_cover_every_format_form_and_file_type():
    """One example per (format, standard/conversational form, .jsonl/.csv/.parquet)."""
    covered = set()
    for path in FILES:
        fmt = path.name.split("_")[0].split(".")[0]
        covered.add((fmt, load(path, fmt).form, path.suffix))
    wanted = {(fmt, form, suffix) for fmt in ("prompt", "pairwise", "unpaired", "sft")
              for form in ("standard", "conversational")
              for suffix in (".jsonl", ".csv", ".parquet")}
    assert not wanted - covered, sorted(wanted - covered)


def test_readme_lists_every_example():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in sorted(ROOT.iterdir()):
        if path.name != "README.md":
            assert f"`{path.name}`" in readme, f"data_formats/README.md lacks {path.name}"


def test_ranked_example_converts(tmp_path):
    from align.data.convert import convert_source

    report = convert_source(str(ROOT / "ranked.jsonl"), str(tmp_path / "pairs.jsonl"),
                            pairs="all")
    assert report.mode == "rated" and not report.errors and report.rows >= 4
    assert len((tmp_path / "pairs.jsonl").read_text().splitlines()) == report.rows
