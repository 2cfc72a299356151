"""Every source type and the column mapping, with positions in each source's own unit."""

from __future__ import annotations

import json

import pytest

from align.data import load
from align.errors import AlignError

ROWS = [{"prompt": "p1", "chosen": "a", "rejected": "b"},
        {"prompt": "p2", "chosen": "c", "rejected": "d"}]


def test_json_array(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps(ROWS))
    r = load(p, "pairwise")
    assert r.ok and len(r.rows) == 2


def test_json_array_errors_name_the_index(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps([ROWS[0], {"prompt": "p", "chosen": "a"}]))
    r = load(p, "pairwise")
    assert r.errors[0].position == "index 1 (record 2)" and r.errors[0].field == "rejected"


def test_json_that_is_really_jsonl(tmp_path):
    p = tmp_path / "d.json"
    p.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    assert load(p, "pairwise").ok


def test_json_single_object_is_explained(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps({"data": ROWS}))
    r = load(p, "pairwise")
    assert "JSON array" in r.errors[0].message


def test_json_syntax_error_names_the_line(tmp_path):
    p = tmp_path / "d.json"
    p.write_text('[\n {"prompt": "a"},\n {"prompt": }\n]')
    r = load(p, "prompt")
    assert r.errors[0].position == "line 3"


def test_csv(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('prompt,chosen,rejected\n"Hello, you",a,b\np2,c,d\n')
    r = load(p, "pairwise")
    assert r.ok and r.rows[0]["prompt"] == "Hello, you"


def test_csv_errors_name_row_and_line(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("prompt,completion,label\nq,a,true\nq,,false\n")
    r = load(p, "unpaired")
    assert r.errors[0].position == "row 2 (line 3)" and r.errors[0].field == "completion"


def test_csv_labels_and_json_message_cells(tmp_path):
    p = tmp_path / "d.csv"
    msgs = json.dumps([{"role": "user", "content": "q"}]).replace('"', '""')
    reply = json.dumps([{"role": "assistant", "content": "a"}]).replace('"', '""')
    p.write_text(f'prompt,completion,label\n"{msgs}","{reply}",True\n')
    r = load(p, "unpaired")
    assert r.ok, r.error_report()
    assert r.rows[0]["label"] is True and r.form == "conversational"


def test_csv_numeric_label_is_rejected(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("prompt,completion,label\nq,a,1\n")
    r = load(p, "unpaired")
    assert "write the JSON boolean" in r.errors[0].message


def test_csv_wrong_cell_count(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("prompt,chosen,rejected\na,b\n")
    r = load(p, "pairwise")
    assert "expected 3 cells" in r.errors[0].message and r.errors[0].position == "row 1 (line 2)"


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS + [{"prompt": "p3", "chosen": "e",
                                                 "rejected": None}]), p)
    r = load(p, "pairwise")
    assert len(r.rows) == 2 and r.errors[0].position == "index 2 (record 3)"


def test_parquet_conversational(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "d.parquet"
    rows = [{"prompt": [{"role": "user", "content": "q"}],
             "completion": [{"role": "assistant", "content": "a"}], "label": True}]
    pq.write_table(pa.Table.from_pylist(rows), p)
    assert load(p, "unpaired").ok


def test_saved_dataset_directory(tmp_path):
    from datasets import Dataset

    Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "saved"))
    r = load(tmp_path / "saved", "pairwise")
    assert r.ok and len(r.rows) == 2


def test_saved_dataset_dict_uses_train_split(tmp_path):
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list(ROWS)}).save_to_disk(str(tmp_path / "saved"))
    assert load(tmp_path / "saved", "pairwise").ok


def test_plain_directory_is_refused(tmp_path):
    with pytest.raises(AlignError, match="save_to_disk"):
        load(tmp_path, "pairwise")


def test_missing_file(tmp_path):
    with pytest.raises(AlignError, match="no such file"):
        load(tmp_path / "nope.jsonl", "pairwise")


def test_unsupported_suffix(tmp_path):
    p = tmp_path / "d.txt"
    p.write_text("x")
    with pytest.raises(AlignError, match="unsupported file type"):
        load(p, "pairwise")


def test_column_mapping(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"question": "q", "good": "a", "bad": "b"}) + "\n")
    r = load(p, "pairwise", "prompt=question,chosen=good,rejected=bad")
    assert r.ok and r.rows[0] == {"prompt": "q", "chosen": "a", "rejected": "b"}


def test_column_mapping_missing_source_column(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"question": "q", "good": "a"}) + "\n")
    r = load(p, "pairwise", "prompt=question,chosen=good,rejected=bad")
    assert r.errors[0].field == "rejected"


def test_bad_column_spec():
    from align.data.io import parse_columns

    with pytest.raises(AlignError, match="ours=theirs"):
        parse_columns("prompt")


@pytest.mark.parametrize("sep", ["\t", ";"])
def test_csv_separated_by_tabs_or_semicolons(tmp_path, sep):
    p = tmp_path / "d.csv"
    p.write_text(sep.join(["prompt", "chosen", "rejected"]) + "\n" + sep.join("abc") + "\n")
    r = load(p, "pairwise")
    assert r.ok and r.rows[0] == {"prompt": "a", "chosen": "b", "rejected": "c"}


def test_tsv_suffix(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_text("prompt\tcompletion\tlabel\nq\ta\tfalse\n")
    r = load(p, "unpaired")
    assert r.ok and r.rows[0]["label"] is False


def test_csv_with_bom_and_crlf(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes(b"\xef\xbb\xbfprompt,chosen,rejected\r\na,b,c\r\n")
    assert load(p, "pairwise").rows == [{"prompt": "a", "chosen": "b", "rejected": "c"}]


def test_header_only_csv_and_empty_json_array(tmp_path):
    (tmp_path / "h.csv").write_text("prompt,chosen,rejected\n")
    (tmp_path / "e.json").write_text("[]")
    for name in ("h.csv", "e.json"):
        r = load(tmp_path / name, "pairwise")
        assert not r.ok and "no records" in r.errors[0].message
