"""CSV cells that hold structures: parsed (JSON, then Python literals), never eval'd, never
trained on as text; round trips through datasets' and pandas' to_csv."""

from __future__ import annotations

import builtins
import json

import pytest

from align.data import load
from align.data.csv import coerce_csv_cells, parse_cell

U = lambda text: {"role": "user", "content": text}  # noqa: E731
A = lambda text: {"role": "assistant", "content": text}  # noqa: E731


def forbid_eval(monkeypatch):
    """From here on, any call to eval fails the test."""
    def forbidden(*args, **kwargs):
        raise AssertionError("eval must never be called on data")

    monkeypatch.setattr(builtins, "eval", forbidden)


@pytest.fixture
def no_eval(monkeypatch):
    forbid_eval(monkeypatch)


@pytest.mark.parametrize("text,value", [
    ('[{"role": "user", "content": "q"}]', [U("q")]),
    ("[{'role': 'user', 'content': \"it's\"}]", [U("it's")]),
    ("{'ok': True, 'n': None}", {"ok": True, "n": None}),
    # datasets' to_csv writes lists of dicts as numpy arrays: no commas between elements
    ("[{'role': 'user', 'content': 'q'} {'role': 'assistant', 'content': 'a, b'}]",
     [U("q"), A("a, b")]),
    ("[{'role': 'user', 'content': 'q'}\n {'role': 'assistant', 'content': 'a'}]",
     [U("q"), A("a")]),
    ("[{'a': array([{'x': 1} {'x': 2}], dtype=object)}]", [{"a": [{"x": 1}, {"x": 2}]}]),
])
def test_cells_are_read_as_json_or_python_literals(no_eval, text, value):
    assert parse_cell(text) == value


@pytest.mark.parametrize("text", [
    "__import__('os').system('touch /tmp/align-pwned')",
    "[{'role': 'user', 'content': open('/etc/passwd').read()}]",
    "[{'role': 'user', 'content': (lambda: 1)()}]",
])
def test_code_in_a_cell_is_refused_not_run(no_eval, text, tmp_path):
    with pytest.raises(ValueError):
        parse_cell(text)


def test_a_message_list_cell_that_cannot_be_read_is_an_error_not_text(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('prompt,chosen,rejected\n"[{\'role\': \'user\', \'content\': oops}]",a,b\n')
    r = load(p, "pairwise")
    assert not r.ok and r.errors[0].field == "prompt"
    assert "neither JSON nor a Python literal" in r.errors[0].message
    assert len(r.rows) == 0


def test_text_that_only_looks_like_brackets_stays_text():
    data = {"prompt": "[INST] hello [/INST]", "note": "[citation needed]"}
    assert coerce_csv_cells(data) == [] and data["prompt"] == "[INST] hello [/INST]"


PAIRS = [{"prompt": [U(f"q{i}, with a comma")], "chosen": [A(f"it's {i}")],
          "rejected": [A(f'say "{i}"')], "score": 1.5 + i} for i in range(3)]
UNPAIRED = [{"prompt": [U(f"q{i}")], "completion": [A(f"a{i}")], "label": i % 2 == 0}
            for i in range(4)]


@pytest.mark.parametrize("writer", ["datasets", "pandas"])
@pytest.mark.parametrize("fmt,rows", [("pairwise", PAIRS), ("unpaired", UNPAIRED)])
def test_csv_round_trips_from_datasets_and_pandas(monkeypatch, tmp_path, writer, fmt, rows):
    p = tmp_path / "d.csv"
    if writer == "datasets":
        from datasets import Dataset

        Dataset.from_list(rows).to_csv(str(p), index=False)
    else:
        import pandas as pd

        pd.DataFrame(rows).to_csv(p, index=False)
    assert "'role'" in p.read_text()  # Python repr, not JSON, in the cells
    load(p, fmt)  # once, so that every module it needs is imported
    forbid_eval(monkeypatch)
    r = load(p, fmt)
    assert r.ok, r.error_report()
    assert r.form == "conversational"
    for got, want in zip(r.rows, rows):
        for key in ("prompt", "chosen", "rejected", "completion", "label"):
            if key in want:
                assert got[key] == want[key]


def test_csv_conversational_pairs_never_reach_training_as_strings(tmp_path):
    from datasets import Dataset

    p = tmp_path / "d.csv"
    Dataset.from_list(PAIRS).to_csv(str(p), index=False)
    rows = list(load(p, "pairwise").rows)
    assert all(isinstance(r[k], list) for r in rows for k in ("prompt", "chosen", "rejected"))


def test_csv_json_cells_still_work(tmp_path):
    p = tmp_path / "d.csv"
    cell = json.dumps([U("q")]).replace('"', '""')
    p.write_text(f'prompt,completion,label\n"{cell}","{json.dumps([A("a")]).replace(chr(34), chr(34) * 2)}",False\n')
    r = load(p, "unpaired")
    assert r.ok and r.rows[0]["prompt"] == [U("q")] and r.rows[0]["label"] is False
