import json

from align.data import load
from align.data.convert import pairwise_to_unpaired, ranked_to_pairwise
from align.data.io import Record


def _rec(data):
    return Record("line 1", data)


def test_ranked_best_worst():
    rows, errors = ranked_to_pairwise([_rec({"prompt": "p", "completions": ["a", "b", "c"]})],
                                      "f")
    assert not errors and rows == [{"prompt": "p", "chosen": "a", "rejected": "c"}]


def test_scored_all_pairs_skip_ties_and_record_margin():
    rows, _ = ranked_to_pairwise([_rec({"prompt": "p", "completions": ["x", "y", "z"],
                                        "scores": [1, 3, 1]})], "f", pairs="all")
    assert {(r["chosen"], r["rejected"]) for r in rows} == {("y", "x"), ("y", "z")}
    assert all(r["margin"] == 2.0 for r in rows)


def test_adjacent_pairs():
    rows, _ = ranked_to_pairwise([_rec({"prompt": "p", "completions": ["a", "b", "c"]})], "f",
                                 pairs="adjacent")
    assert [(r["chosen"], r["rejected"]) for r in rows] == [("a", "b"), ("b", "c")]


def test_ranked_errors():
    _, errors = ranked_to_pairwise([_rec({"prompt": "p", "completions": ["a"]}),
                                    _rec({"prompt": "p", "completions": ["a", "b"],
                                          "scores": [1]})], "f")
    assert [e.field for e in errors] == ["completions", "scores"]


def test_pairwise_to_unpaired():
    rows = list(pairwise_to_unpaired([{"prompt": "p", "chosen": "a", "rejected": "b"}]))
    assert rows == [{"prompt": "p", "completion": "a", "label": True},
                    {"prompt": "p", "completion": "b", "label": False}]


def test_convert_cli_roundtrip(tmp_path, capsys):
    from tests.conftest import run_cli, write_jsonl

    src = write_jsonl(tmp_path / "ranked.jsonl",
                      [{"question": "p", "responses": ["good", "ok", "bad"]}])
    out = tmp_path / "pairs.jsonl"
    code, stdout, _ = run_cli(["data", "convert", src, "--to", "pairwise", "-o", out,
                               "--columns", "prompt=question,completions=responses"], capsys)
    assert code == 0 and "wrote 1 pairwise" in stdout
    assert load(out, "pairwise").ok
    kto = tmp_path / "kto.jsonl"
    code, _, _ = run_cli(["data", "convert", out, "--to", "unpaired", "-o", kto], capsys)
    assert code == 0
    assert [json.loads(l)["label"] for l in kto.read_text().splitlines()] == [True, False]
