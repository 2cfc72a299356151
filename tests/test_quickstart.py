"""A reduced quickstart: the whole pipeline runs and aligned policies beat the SFT policy."""

from __future__ import annotations

import json

import pytest

from align.quickstart import task
from tests.conftest import run_cli


def test_gold_reward_by_hand():
    assert task.gold_reward("sea", "The sea is calm, lovely and warm.") == 1.0
    assert task.gold_reward("sea", "The sea is calm and grim.") == 0.0
    assert task.gold_reward("sea", "The city is calm.") == 0.0  # off-topic: 1 - 1
    assert task.gold_reward("sea", "") == -1.0
    assert task.gold_reward("sea", "The sea is nice.") == -0.5  # no known adjective
    # five pleasant adjectives: 1 - 0.25 * 2 for wordiness
    assert task.gold_reward("sea", "The sea is calm, warm, kind, sweet and lovely.") == 0.5


def test_held_out_prompts_are_new_combinations():
    train, held = task.split_prompts(0)
    assert not set(train) & set(held)
    assert {p.topic for p in train} == set(task.TOPICS)


def test_rater_prefers_gold_and_is_noisy():
    import random

    rng = random.Random(0)
    wins = sum(task.noisy_preference(rng, 1.0, 0.5) for _ in range(2000)) / 2000
    assert 0.8 < wins < 0.95  # sigmoid(0.5 / 0.25) = 0.88


def test_reduced_quickstart_aligns_and_writes_its_report(tmp_path, capsys):
    out = tmp_path / "qs"
    code, stdout, err = run_cli(["quickstart", "--out", out, "--algos", "dpo,ppo",
                                 "--scale", "0.5"], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seconds"] > 0 and summary["reward_model"]["accuracy"] > 0.6
    sft_gold = summary["sft"]["gold_reward"]
    for name in ("dpo", "ppo"):
        algo = summary["algos"][name]
        assert set(algo) >= {"gold_reward", "rm_reward", "kl", "mean_length", "collapsed"}
        assert algo["gold_reward"] > sft_gold + 0.2, (name, algo, sft_gold)
        assert not algo["collapsed"]
        assert len(summary["curves"][name]) >= 3  # start + checkpoints along the run
    assert (out / "curves.png").stat().st_size > 10_000
    assert "algorithm" in stdout and "sft (start)" in stdout


def test_overoptimization_run_is_reported(tmp_path, capsys):
    out = tmp_path / "qs"
    code, stdout, err = run_cli(["quickstart", "--out", out, "--algos", "ppo", "--scale", "0.2",
                                 "--overoptimization"], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    over = summary["overoptimization"]
    assert {"gold_reward", "rm_reward", "kl", "curve"} <= set(over)
    assert "PPO without KL" in stdout


@pytest.mark.parametrize("bad", ["nope", "rm"])
@pytest.mark.parametrize("flag", ["--output-dir", "--out"])
def test_quickstart_rejects_unknown_or_internal_algorithms(tmp_path, capsys, bad, flag):
    """--output-dir, as every command spells it (--out, its older name, still works)."""
    code, _, err = run_cli(["quickstart", flag, tmp_path, "--algos", bad], capsys)
    assert code == 2 and err.startswith("error:"), err
    assert "unknown algorithm 'nope'" in err if bad == "nope" else "trains rm itself" in err


def test_a_health_alarm_is_explained_with_the_algorithms_hint():
    from align.quickstart import report

    event = ("[health] step 60: likelihood_displacement: chosen log-prob fell from -8.21 to "
             "-12.34 while the margin rose from 0.10 to 0.81: both answers are being pushed "
             "down. Try: lower --learning-rate or raise --beta")
    summary = {"sft": {"gold_reward": -0.1, "rm_reward": 0.5, "kl": 0.0, "mean_length": 11.0},
               "algos": {"kto": {"gold_reward": 0.8, "rm_reward": 3.9, "kl": 3.5,
                                 "mean_length": 19.0, "collapsed": True, "seconds": 9.0,
                                 "health_events": [event, event.replace("step 60", "step 70")]},
                         "dpo": {"gold_reward": 0.5, "rm_reward": 3.3, "kl": 1.2,
                                 "mean_length": 14.0, "collapsed": False, "seconds": 5.0}}}
    table = report.leaderboard(summary)
    assert "alarm: displacement" in table and " ok " in table
    (line,) = report.alarms(summary)  # one line per detector, not per firing
    assert line.startswith("kto: the likelihood displacement detector fired at step 60.")
    assert "less likely, not more" in line  # in words
    assert "fell from -8.21 to -12.34" in line  # the numbers
    assert "What to try with kto: lower --learning-rate or raise --beta." in line
    assert "+0.800 against the SFT policy's -0.100" in line


def test_algorithms_side_by_side_give_the_table_of_one_at_a_time(tmp_path, capsys):
    """--threads 2 trains the SFT policy and the reward model on two threads, then runs the
    algorithms two at a time (this process and one worker process, one thread each); every
    number but the seconds is the one of the run that took everything on one thread (MKL's
    strict mode: the same gradients at any thread count)."""
    runs = {}
    for threads in (1, 2):
        out = tmp_path / f"t{threads}"
        code, stdout, err = run_cli(["quickstart", "--out", out, "--algos", "dpo,simpo,orpo",
                                     "--scale", "0.2", "--threads", str(threads)], capsys)
        assert code == 0, err
        runs[threads] = json.loads((out / "summary.json").read_text())
        assert ("2 algorithms at a time" in stdout) == (threads == 2)
        assert (out / "logs" / "simpo.log").stat().st_size > 0  # a worker's stage logs too
    one, two = runs[1], runs[2]
    assert (one["threads"], two["threads"], two["cpu_threads"]) == (1, 2, 2)
    assert (one["algorithm_threads"], two["algorithm_threads"]) == (1, 1)
    assert list(two["algos"]) == ["dpo", "simpo", "orpo"]  # --algos order, whoever ran it
    for name in one["algos"]:
        a, b = dict(one["algos"][name]), dict(two["algos"][name])
        a.pop("seconds"), b.pop("seconds")
        assert a == b, name
    assert one["curves"] == two["curves"]


def test_agent_stage_demonstrations_answer_half_directly_and_half_with_the_tool():
    """The SFT rows: DIRECT_SHARE of them state the product without calling the tool, the rest
    call multiply with the problem's numbers, get the product back and copy it."""
    from align.quickstart import agent

    pairs = agent.split(0)["sft"][:10]
    rows = agent.demonstrations(pairs, "[]")
    assert len(rows) == 10 and all(r["tools"] == "[]" for r in rows)
    direct = [r for r in rows if len(r["completion"]) == 1]
    assert len(direct) == round(agent.DIRECT_SHARE * 10) == 5
    for (a, b), row in zip(pairs, rows):
        assert row["prompt"] == [{"role": "user", "content": f"What is {a} * {b}?"}]
        turns = row["completion"]
        if len(turns) == 1:  # direct: the true product, no call
            assert turns == [{"role": "assistant", "content": f"{a} * {b} = {a * b}."}]
            continue
        call, result, answer = turns
        assert call["tool_calls"][0]["function"] == {"name": "multiply",
                                                     "arguments": {"a": a, "b": b}}
        assert result == {"role": "tool", "name": "multiply", "content": str(a * b)}
        assert answer == {"role": "assistant", "content": f"The answer is {a * b}."}
    # the problems are disjoint: nothing held out or on dev is trained on
    split = agent.split(0)
    trained = set(split["sft"]) | set(split["grpo"])
    assert not trained & set(split["held_out"]) and not trained & set(split["dev"])


@pytest.mark.slow
def test_agent_stage_grpo_with_the_tool_beats_sft(tmp_path):
    """The agent stage at its documented size (seed 0, held-out problems): the tiny model
    cannot multiply; after SFT on half direct, half tool demonstrations it calls the tool on
    part of the problems only (its direct answers are wrong), and GRPO with the tool learns to
    call it: at least 0.10 more exact answers than the SFT policy (issue 24), the tool called
    in (nearly) every episode. pytest has loaded torch before the quickstart's CPU math pin
    could apply, so the numbers are not the documented ones."""
    from align.quickstart import agent, pipeline

    opts = pipeline.Options(out=tmp_path / "qs", agent=True, stage_threads=1)
    summary, curve, seconds, _ = pipeline.agent_stage(opts, beside=False)
    sft, grpo, no_tool = summary["sft"], summary["grpo"], summary["sft_no_tool"]
    assert summary["held_out"] == agent.HELD_OUT
    assert no_tool["gold"] <= 0.05 and no_tool["tool_calls"] == 0  # no tool, no product
    assert sft["tool_calls"] <= 0.8, summary  # the SFT policy often answers directly
    assert curve[0]["gold"] == sft["gold"] and len(curve) == 1 + agent.CURVE_POINTS
    assert set(seconds) == {"agent sft", "agent grpo"}
    assert not grpo["collapsed"] and grpo["tool_calls"] >= 0.9, grpo
    assert grpo["gold"] >= sft["gold"] + 0.1, summary
