"""Where data comes from: compressed files, folders of shards, dataset repositories with a
card, saved DatasetDicts and their splits, Hub ids (online through datasets.load_dataset,
offline a clear error)."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import zipfile

import pytest

from align.data import load
from align.errors import AlignError
from tests.conftest import run_cli
from tests.data.public_layouts import gsm8k, h4_ultrafeedback, h4_ultrafeedback_saved

ROWS = [{"prompt": f"p{i}", "chosen": "a", "rejected": "b"} for i in range(3)]
TEXT = "".join(json.dumps(r) + "\n" for r in ROWS).encode()


@pytest.mark.parametrize("suffix,opener", [(".gz", gzip.open), (".bz2", bz2.open),
                                           (".xz", lzma.open)])
def test_compressed_jsonl(tmp_path, suffix, opener):
    p = tmp_path / f"d.jsonl{suffix}"
    with opener(p, "wb") as fh:
        fh.write(TEXT + b"not json\n")
    r = load(p, "pairwise")
    assert len(r.rows) == 3 and r.errors[0].position == "line 4"


def test_truncated_gzip_says_the_file_is_damaged(tmp_path):
    p = tmp_path / "d.jsonl.gz"
    p.write_bytes(gzip.compress(TEXT * 50)[:-30])
    r = load(p, "pairwise")
    assert not r.ok and "damaged" in r.errors[-1].message


def test_zip_of_data_files(tmp_path):
    p = tmp_path / "d.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("part1.jsonl", TEXT)
        z.writestr("part2.jsonl", TEXT)
        z.writestr("README.txt", "ignored")
    assert len(load(p, "pairwise").rows) == 6


def test_folder_of_shards_without_a_card(tmp_path):
    for i in range(2):
        (tmp_path / "repo" / "data").mkdir(parents=True, exist_ok=True)
        (tmp_path / "repo" / "data" / f"train-0000{i}-of-00002.jsonl").write_bytes(TEXT)
    r = load(tmp_path / "repo", "pairwise")
    assert r.ok and len(r.rows) == 6 and r.file.endswith("(split train)")


def test_dataset_repository_with_a_card_and_named_splits(tmp_path):
    repo = h4_ultrafeedback(tmp_path)
    with pytest.raises(AlignError, match=r"several splits and none is 'train' \(splits: .*"
                                         r"train_prefs.*\); pick one with --dataset-split"):
        load(repo, "pairwise")
    r = load(repo, "pairwise", split="test_prefs")
    assert r.ok and "test_prefs" in r.file
    with pytest.raises(AlignError, match="has no split 'dev'"):
        load(repo, "pairwise", split="dev")


def test_dataset_with_configs_needs_one(tmp_path):
    repo = gsm8k(tmp_path)
    code_error = None
    try:
        load(repo, "prompt", "prompt=question")
    except AlignError as e:
        code_error = str(e)
    assert code_error and "--dataset-config" in code_error and "main" in code_error
    assert load(repo, "prompt", "prompt=question", config="socratic").ok


def test_saved_dataset_dict_split_is_chosen_by_flag(tmp_path):
    path = h4_ultrafeedback_saved(tmp_path)
    with pytest.raises(AlignError, match="--dataset-split"):
        load(path, "pairwise")
    assert load(path, "pairwise", split="train_prefs").ok


def test_eval_dataset_errors_name_their_own_flag(tmp_path, capsys, tiny_lm):
    path = h4_ultrafeedback_saved(tmp_path)
    code, _, err = run_cli(["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", path,
                            "--dataset-split", "train_prefs", "--eval-dataset", path,
                            "--dry-run"], capsys)
    assert code == 2 and "--eval-dataset-split" in err
    code, out, err = run_cli(["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", path,
                              "--dataset-split", "train_prefs", "--eval-dataset", path,
                              "--eval-dataset-split", "test_prefs", "--dry-run"], capsys)
    assert code == 0, err
    assert "eval data: 8 records" in out


def test_bad_line_in_a_shard_is_named_by_file_and_line(tmp_path):
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "train-00000-of-00002.jsonl").write_bytes(TEXT)
    (repo / "data" / "train-00001-of-00002.jsonl").write_bytes(TEXT + b'{"prompt": oops}\n')
    r = load(repo, "pairwise")
    bad = [e for e in r.errors]
    assert len(bad) == 1 and bad[0].position == "line 4"
    assert bad[0].file.endswith("train-00001-of-00002.jsonl")
    assert len(r.rows) == 6


def test_hub_id_offline_is_one_clear_line(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(["data", "validate", "trl-lib/ultrafeedback_binarized",
                            "--algo", "dpo"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "trl-lib/ultrafeedback_binarized" in err
    assert "HF_HUB_OFFLINE" in err


def test_a_path_that_does_not_exist_is_not_taken_for_a_hub_id(tmp_path, capsys):
    code, _, err = run_cli(["data", "validate", tmp_path / "nope.jsonl", "--algo", "dpo"], capsys)
    assert code == 2 and "no such file or directory" in err and "Hub" not in err


def test_an_existing_path_wins_over_the_hub_id_of_the_same_spelling(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "name").mkdir()
    (tmp_path / "org" / "name" / "train.jsonl").write_bytes(TEXT)
    r = load("org/name", "pairwise")
    assert r.ok and len(r.rows) == 3


def test_hub_ids_go_through_datasets_load_dataset(tmp_path, monkeypatch):
    """The online path without a network: datasets' Hub functions are pointed at a local
    dataset repository, as the Hub would serve it."""
    import datasets

    repo = h4_ultrafeedback(tmp_path)
    calls = []
    real_splits, real_load = datasets.get_dataset_split_names, datasets.load_dataset

    def split_names(path, config_name=None, **kw):
        calls.append(("splits", path))
        return real_splits(str(repo) if path == "HuggingFaceH4/ultrafeedback_binarized" else path,
                           config_name, **kw)

    def load_dataset(path, name=None, split=None, **kw):
        calls.append(("load", path, split))
        return real_load(str(repo) if path == "HuggingFaceH4/ultrafeedback_binarized" else path,
                         name, split=split, **kw)

    monkeypatch.setattr(datasets, "get_dataset_split_names", split_names)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    r = load("HuggingFaceH4/ultrafeedback_binarized", "pairwise", split="train_prefs")
    assert r.ok and len(r.rows) == 8
    assert r.file == "HuggingFaceH4/ultrafeedback_binarized (split train_prefs)"
    assert ("load", "HuggingFaceH4/ultrafeedback_binarized", "train_prefs") in calls


def test_a_single_file_has_no_splits(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(TEXT)
    with pytest.raises(AlignError, match="single file"):
        load(p, "pairwise", split="train")
