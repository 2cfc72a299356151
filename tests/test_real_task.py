"""The real-model suite's pure parts, checked in the default suite (no model needed): the gold
measure of tests/real/task.py and the table scripts/real_table.py writes for the docs."""

from __future__ import annotations


import pytest

from tests.real import harness, task

EGG = next(h for h in task.HELD_OUT if h.prompt == "How do I boil an egg?")


@pytest.mark.parametrize("answer,ended,expected", [
    ("Put the egg in boiling water for nine minutes.", True, 1.0),  # adds "water", "minutes"
    ("Put the egg in boiling water for nine minutes.", False, 0.0),  # ran out of tokens
    ("You can boil an egg with a spoon.", True, 0.0),  # only the question's own words
    ("I'm not sure how to boil an egg in water.", True, 0.0),  # a refusal
    ("Boil water. Boil water. Boil water.", True, 0.0),  # a loop (repeated 3-gram)
    ("Water.", True, 0.0),  # too short to say anything
    (" ".join(["water"] + [f"w{i}" for i in range(41)]), True, (60 - 42) / 35),  # 42 words
])
def test_gold_rewards_brief_finished_answers_that_add_something(answer, ended, expected):
    assert task.gold(answer, ended, EGG.keywords, EGG.prompt) == pytest.approx(expected)


def test_concise_also_needs_one_paragraph_and_an_end_mark():
    good = "Put the egg in boiling water for nine minutes."
    assert task.concise(good, True, EGG.keywords, EGG.prompt)
    assert not task.concise(good[:-1], True, EGG.keywords, EGG.prompt)
    assert not task.concise("Boil it.\nThen cool it in water.", True, EGG.keywords, EGG.prompt)


def test_every_reference_answer_scores_full_gold():
    for item in task.HELD_OUT:
        assert task.concise(item.answer, True, item.keywords, item.prompt), item.prompt


def test_results_table_keeps_the_latest_row_per_run():
    real_table = harness.script("real_table")
    row = {"gold_before": 0.02, "accuracy_before": 0.0, "words_before": 51.0, "steps": 16,
           "machine": "test box"}
    table = real_table.table([
        {**row, "name": "dpo", "gold_after": 0.3, "accuracy_after": 0.2, "words_after": 30.0,
         "wall_s": 60.0},
        {"name": "rm", "accuracy_before": 0.5, "accuracy_after": 1.0, "steps": 30,
         "wall_s": 120.0, "machine": "test box"},
        {"name": "quickstart --model (dpo)", "steps": None, "wall_s": 1.0, "machine": "x"},
        {**row, "name": "dpo", "gold_after": 0.4, "accuracy_after": 0.25, "words_after": 22.0,
         "wall_s": 258.0},
    ])
    lines = table.splitlines()
    assert lines[2] == "| dpo | 0.02 → 0.40 | 0% → 25% | 51 → 22 | 16 | 4.3 min |"
    assert lines[3] == "| rm | — | 50% → 100% (held-out pairs ranked right) | — | 30 | 2.0 min |"
    assert "quickstart" not in table and "Machine: test box." in table


def test_drop_checkpoints_keeps_the_final_model(tmp_path):
    out = tmp_path / "run"
    for name in ("checkpoint-8/optimizer.pt", "checkpoint-16/model.safetensors",
                 "model.safetensors", "metrics.jsonl"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("x")
    harness.drop_checkpoints(["rlhf", "--output-dir", out, "--max-steps", 16])
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl", "model.safetensors"]
    harness.drop_checkpoints(["rlhf", "--max-steps", 16])  # no output dir: nothing to do


def test_the_suite_and_the_scripts_share_their_default_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("ALIGN_REAL_MODEL", str(tmp_path / "model"))
    monkeypatch.setenv("ALIGN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ALIGN_REAL_RESULTS", raising=False)
    assert harness.model_dir() == tmp_path / "model"
    assert harness.results_file() == tmp_path / "cache" / "real" / "results.jsonl"


def test_dev_prompts_are_new_advice_prompts_with_full_gold_answers():
    assert len(task.DEV) >= 16
    assert not {h.prompt for h in task.DEV} & {h.prompt for h in task.HELD_OUT}
    for item in task.DEV:
        assert task.concise(item.answer, True, item.keywords, item.prompt), item.prompt
