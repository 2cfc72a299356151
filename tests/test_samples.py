"""samples.jsonl (align/samples.py): the writer (how many rows, which, cut back on resume and
rollback), the board's incremental reader (align/board/runs.py SamplesTail), and real rows
written by PPO and GRPO runs on a tiny model, each reward recomputed from its answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from align.board.runs import RunDir
from align.metrics import read_metrics
from align.samples import MAX_CHARS, SamplesWriter, read_samples, spread
from tests.conftest import run_cli, write_jsonl


def answers(n: int, tag: str = "") -> list[dict]:
    return [{"prompt": f"p{i}", "answer": f"a{i}{tag}", "reward": float(i)} for i in range(n)]


def test_spread_picks_evenly_from_the_first_and_all_when_few():
    assert spread(16, 4) == [0, 4, 8, 12]  # GRPO, 4 prompts x 4: one answer per prompt
    assert spread(10, 3) == [0, 3, 6]
    assert spread(3, 8) == [0, 1, 2]
    assert spread(5, 0) == []


def test_writer_keeps_per_step_rows_and_cuts_long_texts(tmp_path):
    w = SamplesWriter(tmp_path, 3)
    assert w.write(2, answers(12)) == 3
    long = [{"prompt": "p", "answer": "x" * (MAX_CHARS + 10), "reward": float("nan")}]
    w.write(4, long)
    rows = read_samples(tmp_path)
    assert [(r["step"], r["prompt"], r["reward"]) for r in rows[:3]] == \
        [(2, "p0", 0.0), (2, "p4", 4.0), (2, "p8", 8.0)]
    assert rows[3]["answer"] == "x" * MAX_CHARS + " ... [10 more characters]"
    assert rows[3]["reward"] == "nan"  # JSON has no NaN: a string, as metrics.jsonl writes it
    assert SamplesWriter(tmp_path / "off", 0).write(1, answers(4)) == 0
    assert not (tmp_path / "off").exists()


def test_writer_counts_tool_calls_of_a_conversation(tmp_path):
    turns = [{"role": "assistant", "content": "", "tool_calls": [
                 {"type": "function", "function": {"name": "add", "arguments": {"a": 1}}}]},
             {"role": "tool", "name": "add", "content": "3"},
             {"role": "assistant", "content": "3"}]
    SamplesWriter(tmp_path, 1).write(1, [{"prompt": [{"role": "user", "content": "1+2"}],
                                          "answer": turns, "reward": 1.0}])
    row = read_samples(tmp_path)[0]
    assert row["tool_calls"] == 1 and row["answer"] == turns


def test_writer_drops_later_rows_on_resume_and_after_a_rollback(tmp_path):
    w = SamplesWriter(tmp_path, 2)
    for step in (1, 2, 3, 4):
        w.write(step, answers(2, f"@{step}"))
    resumed = SamplesWriter(tmp_path, 2, resume_step=2)  # the checkpoint of step 2
    resumed.write(3, answers(2, "@3 again"))
    assert [(r["step"], r["answer"]) for r in read_samples(tmp_path)] == [
        (1, "a0@1"), (1, "a1@1"), (2, "a0@2"), (2, "a1@2"), (3, "a0@3 again"), (3, "a1@3 again")]
    resumed.write(2, answers(1, "@2 after a rollback"))  # a step again: what followed goes
    assert [(r["step"], r["answer"]) for r in read_samples(tmp_path)][-1:] == \
        [(2, "a0@2 after a rollback")]
    assert [r["step"] for r in read_samples(tmp_path)] == [1, 1, 2]
    SamplesWriter(tmp_path, 2).write(1, answers(1))  # a new run starts the file empty
    assert len(read_samples(tmp_path)) == 1


def test_board_reads_samples_incrementally_and_anew_after_a_rewrite(tmp_path):
    (tmp_path / "align_config.yaml").write_text("algo: grpo\n")
    run = RunDir(tmp_path, "0:")
    assert run.samples() == {"count": 0, "generation": 0, "full": True, "steps": [],
                             "step": None, "answers": []}
    w = SamplesWriter(tmp_path, 2)
    w.write(1, answers(4, "@1"))
    w.write(2, answers(4, "@2"))
    first = run.samples()
    assert first["steps"] == [1, 2] and first["step"] == 2  # the newest by default
    assert [a["answer"] for a in first["answers"]] == ["a0@2", "a2@2"]
    assert [a["answer"] for a in run.samples(step=1)["answers"]] == ["a0@1", "a2@1"]
    size = (tmp_path / "samples.jsonl").stat().st_size
    w.write(3, answers(4, "@3"))
    poll = run.samples(since=2, generation=first["generation"])
    assert not poll["full"] and poll["steps"] == [3] and poll["count"] == 3
    assert run.answers.bytes_read == (tmp_path / "samples.jsonl").stat().st_size - size
    with (tmp_path / "samples.jsonl").open("a") as fh:  # a line still being written waits
        fh.write('{"step": 4, "prompt": "p0", "ans')
    assert run.samples(since=3, generation=first["generation"])["steps"] == []
    w.write(2, answers(4, "@2 after a rollback"))  # the writer rewrites the file
    again = run.samples(since=3, generation=first["generation"])
    assert again["full"] and again["steps"] == [1, 2] and again["generation"] > 0
    assert again["answers"][0]["answer"] == "a0@2 after a rollback"


# --- real rows from training runs ---------------------------------------------------------------
VOWELS = '''
def vowels(prompts, completions, **kwargs):
    """The share of the answer's characters that are vowels."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch in "aeiou" for ch in t) / max(1, len(t)) for t in texts]
'''


def vowel_share(text: str) -> float:
    return sum(ch in "aeiou" for ch in text) / max(1, len(text))


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("samples_data")
    (d / "vowels.py").write_text(VOWELS, encoding="utf-8")
    return write_jsonl(d / "prompts.jsonl", [{"prompt": f"Say a word with {c}:"}
                                             for c in "abcdefghijklmnop"])


@pytest.mark.parametrize("algo", ["ppo", "grpo", "rloo"])
def test_an_online_run_writes_its_answers_with_their_rewards(tmp_path, capsys, tiny_lm,
                                                             prompt_file, algo):
    out = tmp_path / algo
    common = ["rlhf", "--algo", algo, "--model", tiny_lm, "--dataset", prompt_file,
              "--output-dir", out, "--max-steps", "4", "--logging-steps", "2",
              "--reward-fn", f"{prompt_file.parent / 'vowels.py'}:vowels",
              "--reward-weights", "2", "--log-samples", "3", "--report-to", "none",
              "--save-steps", "1000", "--seed", "0"]
    if algo == "ppo":
        extra = ["--rollout-batch-size", "8", "--max-new-tokens", "8",
                 "--per-device-train-batch-size", "8", "--num-mini-batches", "1"]
    else:
        extra = ["--num-generations", "4", "--max-completion-length", "8",
                 "--per-device-train-batch-size", "8"]
    code, _, err = run_cli([*common, *extra], capsys)
    assert code == 0, err[-3000:]
    rows = read_samples(out)
    logged = sorted({r["step"] for r in read_metrics(out) if "loss" in r or "loss/value" in r})
    assert logged == ([2, 4] if algo == "ppo" else [1, 2, 4])  # TRL logs the first step too
    assert [r["step"] for r in rows] == [s for s in logged for _ in range(3)]  # 3 per step
    prompts = {json.loads(line)["prompt"] for line in prompt_file.read_text().splitlines()}
    for r in rows:
        assert r["prompt"] in prompts
        assert isinstance(r["answer"], str)
        # the reward written is the one the run trained on: 2 x the vowel share of the answer
        assert r["reward"] == pytest.approx(2 * vowel_share(r["answer"]), abs=1e-5)
        if algo != "ppo":
            assert r["rewards"] == {"vowels": pytest.approx(vowel_share(r["answer"]))}
            assert isinstance(r["advantage"], float)
    assert len({r["answer"] for r in rows}) > 1  # sampled answers, not one repeated row
    assert (out / "samples.jsonl").stat().st_size < 6 * 1024
