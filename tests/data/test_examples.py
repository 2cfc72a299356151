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


def test_examples_cover_every_format_and_source():
    names = {p.name for p in FILES}
    for fmt in ("prompt", "pairwise", "unpaired", "sft"):
        assert any(n.startswith(fmt) and n.endswith(".jsonl") for n in names)
    assert {p.suffix for p in FILES} >= {".jsonl", ".csv", ".parquet"}


def test_ranked_example_converts():
    from align.data.convert import ranked_to_pairwise
    from align.data.io import read_records

    records, errors, _ = read_records(ROOT / "ranked.jsonl")
    rows, conv_errors = ranked_to_pairwise(records, "ranked.jsonl", "all")
    assert not errors and not conv_errors and len(rows) >= 4
