import json

import pytest

from align.data import load
from align.data.convert import PKU, SHP, ABColumns, ab_row, pairwise_to_unpaired, \
    rated_pairs, sharegpt_row
from tests.conftest import run_cli, write_jsonl


def test_ranked_best_worst():
    rows, errors = rated_pairs({"prompt": "p", "completions": ["a", "b", "c"]})
    assert not errors and rows == [{"prompt": "p", "chosen": "a", "rejected": "c"}]


def test_scored_all_pairs_skip_ties_and_record_margin():
    rows, _ = rated_pairs({"prompt": "p", "completions": ["x", "y", "z"], "scores": [1, 3, 1]},
                          pairs="all")
    assert {(r["chosen"], r["rejected"]) for r in rows} == {("y", "x"), ("y", "z")}
    assert all(r["margin"] == 2.0 for r in rows)


def test_adjacent_pairs():
    rows, _ = rated_pairs({"prompt": "p", "completions": ["a", "b", "c"]}, pairs="adjacent")
    assert [(r["chosen"], r["rejected"]) for r in rows] == [("a", "b"), ("b", "c")]


def test_ranked_errors():
    fields = [field for record in ({"prompt": "p", "completions": ["a"]},
                                   {"prompt": "p", "completions": ["a", "b"], "scores": [1]})
              for field, _ in rated_pairs(record)[1]]
    assert fields == ["completions", "scores"]


def test_pairwise_to_unpaired():
    rows = list(pairwise_to_unpaired([{"prompt": "p", "chosen": "a", "rejected": "b"}]))
    assert rows == [{"prompt": "p", "completion": "a", "label": True},
                    {"prompt": "p", "completion": "b", "label": False}]


def test_convert_cli_roundtrip(tmp_path, capsys):
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


# ---- public layouts -----------------------------------------------------------------------


def test_sharegpt_to_messages_with_a_top_level_system():
    row, errors = sharegpt_row({"id": "x", "system": "Be kind.", "conversations": [
        {"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]})
    assert not errors and row == {"id": "x", "messages": [
        {"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"}]}


def test_sharegpt_preference_turns_become_a_pair():
    row, _ = sharegpt_row({"conversations": [{"from": "human", "value": "q"}],
                           "chosen": {"from": "gpt", "value": "good"},
                           "rejected": {"from": "gpt", "value": "bad"}})
    assert row == {"prompt": [{"role": "user", "content": "q"}],
                   "chosen": [{"role": "assistant", "content": "good"}],
                   "rejected": [{"role": "assistant", "content": "bad"}]}


def test_sharegpt_unknown_speaker_is_named():
    _, errors = sharegpt_row({"conversations": [{"from": "narrator", "value": "q"}]})
    assert "conversations[0].from" in errors[0] and "narrator" in errors[0]


def test_shp_label_1_means_a_and_0_means_b():
    base = {"history": "q", "human_ref_A": "A text", "human_ref_B": "B text", "score_A": 5}
    assert ab_row({**base, "labels": 1}, SHP)[0]["chosen"] == "A text"
    row, _ = ab_row({**base, "labels": 0}, SHP)
    assert (row["chosen"], row["rejected"], row["prompt"]) == ("B text", "A text", "q")
    assert row["score_A"] == 5  # other columns are kept


def test_pku_better_response_id_names_the_better_answer():
    base = {"prompt": "q", "response_0": "zero", "response_1": "one"}
    assert ab_row({**base, "better_response_id": 0}, PKU)[0]["chosen"] == "zero"
    assert ab_row({**base, "better_response_id": 1}, PKU)[0]["chosen"] == "one"


@pytest.mark.parametrize("label", [None, 2, "tie"])
def test_a_label_that_names_neither_answer_is_an_error(label):
    row, errors = ab_row({"prompt": "q", "response_0": "a", "response_1": "b",
                          "better_response_id": label}, PKU)
    assert row is None and "better_response_id: expected 0 (A preferred) or 1" in errors[0]


def test_ab_columns_of_your_own():
    cols = ABColumns(prompt="question", a="left", b="right", label="winner", a_wins="left",
                     b_wins="right")
    row, _ = ab_row({"question": "q", "left": "L", "right": "R", "winner": "Right"}, cols)
    assert row["chosen"] == "R"
    with pytest.raises(ValueError, match="--b-wins"):
        ABColumns(a_wins="left")


def test_rated_ultrafeedback_completions_rank_by_fine_grained_score():
    rec = {"instruction": "q", "models": ["m1", "m2", "m3"], "completions": [
        {"response": "mid", "fine-grained_score": 3.0, "overall_score": 9.0},
        {"response": "best", "fine-grained_score": 4.5, "overall_score": 5.0},
        {"response": "worst", "fine-grained_score": 1.25, "overall_score": 7.0}]}
    rows, errors = rated_pairs(rec)
    assert not errors and rows == [{"prompt": "q", "chosen": "best", "rejected": "worst",
                                    "margin": 3.25}]
    rows, _ = rated_pairs(rec, score_key="overall_score")
    assert (rows[0]["chosen"], rows[0]["rejected"]) == ("mid", "best")


def test_rated_completions_without_scores_are_an_error():
    _, errors = rated_pairs({"instruction": "q", "completions": [
        {"response": "a"}, {"response": "b"}]})
    assert "expected a score" in errors[0][1]


def test_convert_shp_file_and_validate(tmp_path, capsys):
    from tests.data.public_layouts import GOOD, shp

    src = shp(tmp_path)
    out = tmp_path / "pairs.jsonl"
    code, stdout, err = run_cli(["data", "convert", src, "--to", "pairwise", "-o", out], capsys)
    assert code == 0, err
    assert "'labels': 1 = A preferred, 0 = B preferred" in stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["chosen"] for r in rows] == GOOD  # every pair, A or B preferred, the right way


def test_convert_refuses_bad_records_and_writes_nothing(tmp_path, capsys):
    src = write_jsonl(tmp_path / "pku.jsonl", [
        {"prompt": "q", "response_0": "a", "response_1": "b", "better_response_id": 0},
        {"prompt": "q", "response_0": "a", "response_1": "b", "better_response_id": None}])
    out = tmp_path / "pairs.jsonl"
    code, _, err = run_cli(["data", "convert", src, "-o", out], capsys)
    assert code == 2 and "line 2" in err and not out.exists()
    code, stdout, err = run_cli(["data", "convert", src, "-o", out, "--skip-invalid"], capsys)
    assert code == 0 and "left out 1 of 2 records" in err and "wrote 1 pairwise" in stdout


def test_convert_reads_csv_cells_as_loading_does(tmp_path, capsys):
    """The one record loop (align.data.sources.Source.records): a CSV cell that looks like
    chat messages but cannot be read is named, as `align data validate` names it, not
    converted as text."""
    src = tmp_path / "chats.csv"
    src.write_text('conversations\n'
                   '"[{""from"": ""human"", ""value"": ""hi""}, {""from"": ""gpt"", ""value"": '
                   '""hello""}]"\n'
                   '"[{\'from\': \'human\', \'value\': \'hi\'} oops"\n', encoding="utf-8")
    out = tmp_path / "sft.jsonl"
    code, stdout, err = run_cli(["data", "convert", src, "-o", out, "--skip-invalid"], capsys)
    assert code == 0, err
    assert "left out 1 of 2 records" in err and "row 2 (line 3)" in err
    assert "looks like a list of chat messages" in err and "wrote 1 sft" in stdout


def test_convert_with_your_own_ab_columns(tmp_path, capsys):
    src = write_jsonl(tmp_path / "ab.jsonl", [
        {"question": "q", "answer_a": "A", "answer_b": "B", "preferred": "b"}])
    out = tmp_path / "pairs.jsonl"
    code, _, err = run_cli(["data", "convert", src, "-o", out, "--from", "ab", "--prompt",
                         "question", "--a", "answer_a", "--b", "answer_b", "--label",
                         "preferred", "--a-wins", "a", "--b-wins", "b"], capsys)
    assert code == 0, err
    assert json.loads(out.read_text())["chosen"] == "B"


def test_convert_sharegpt_to_sft_cli(tmp_path, capsys):
    from tests.data.public_layouts import sharegpt

    out = tmp_path / "chat.jsonl"
    code, stdout, err = run_cli(["data", "convert", sharegpt(tmp_path), "-o", out], capsys)
    assert code == 0, err
    assert "wrote 8 sft records" in stdout
    assert load(out, "sft").ok


def test_convert_wrong_target_for_the_layout(tmp_path, capsys):
    from tests.data.public_layouts import sharegpt

    code, _, err = run_cli(["data", "convert", sharegpt(tmp_path), "-o", tmp_path / "x.jsonl",
                         "--to", "unpaired"], capsys)
    assert code == 2 and "--from sharegpt converts to sft or pairwise" in err
