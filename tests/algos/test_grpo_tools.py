"""GRPO with tools and environments: what align adds around TRL's tool loop.

Unit tests of the wrappers handed to TRL (:mod:`align.algos.tools`): time limits, the schema
kept, an environment whose reset raises. End to end (the CLI on a tiny model): see below.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from align.algos.tools import guarded_environment, timed
from align.errors import AlignError


def multiply(a: int, b: int) -> int:
    """Multiply two integers.

    Args:
        a: The first factor.
        b: The second factor.
    """
    return a * b


def slow(seconds: float) -> str:
    """Sleep, then answer.

    Args:
        seconds: How long to sleep.
    """
    time.sleep(seconds)
    return "done"


async def slow_async(seconds: float) -> str:
    """Sleep without blocking, then answer.

    Args:
        seconds: How long to sleep.
    """
    await asyncio.sleep(seconds)
    return "done"


def test_timed_keeps_name_signature_and_schema():
    from transformers.utils import get_json_schema

    wrapped = timed(multiply, 1.0)
    assert wrapped.__name__ == "multiply" and wrapped(3, b=4) == 12
    assert get_json_schema(wrapped) == get_json_schema(multiply)


def test_timed_raises_timeout_error_for_a_hanging_tool_and_passes_errors_through():
    start = time.time()
    with pytest.raises(TimeoutError, match=r"slow did not answer within 0.2 s \(--tool-timeout\)"):
        timed(slow, 0.2)(5.0)
    assert time.time() - start < 2.0  # the caller is not kept waiting for the tool
    assert timed(slow, 1.0)(0.0) == "done"
    with pytest.raises(TypeError):  # a bad argument is the tool's own error, for TRL to report
        timed(multiply, 1.0)(1, c=2)


def test_timed_async_tool():
    wrapped = timed(slow_async, 0.2)
    assert asyncio.iscoroutinefunction(wrapped)
    with pytest.raises(TimeoutError, match="slow_async did not answer within 0.2 s"):
        asyncio.run(wrapped(5.0))
    assert asyncio.run(timed(slow_async, 1.0)(0.0)) == "done"


class Counter:
    """An environment with state across turns."""

    def __init__(self):
        self.count = 0

    def reset(self, start: int = 0, **row):
        if start < 0:
            raise ValueError("start must be >= 0")
        self.count = start
        return f"The counter is at {start}."

    def increment(self, by: int) -> int:
        """Add to the counter.

        Args:
            by: How much to add.
        """
        self.count += by
        return self.count

    def get_reward(self) -> float:
        return float(self.count)


def _spec():
    from align.agents.tools import EnvironmentSpec, Tool, tool_schema

    return EnvironmentSpec(name=None, cls=Counter, origin="env.py:Counter",
                           tools=[Tool("increment", tool_schema(Counter().increment, "t"),
                                       "env.py:Counter.increment")], has_reward=True)


def test_guarded_environment_keeps_tools_state_and_reward():
    import inspect

    from transformers.utils import get_json_schema

    cls = guarded_environment(_spec(), 1.0)
    env = cls()
    assert cls.__name__ == "Counter" and isinstance(env, Counter)
    assert env.reset(start=2, prompt="p") == "The counter is at 2."
    assert env.increment(3) == 5 and env.increment(1) == 6 and env.get_reward() == 6.0
    # TRL lists the tools on the class, as functions, and builds the schema from the method
    members = [n for n, _ in inspect.getmembers(cls, predicate=inspect.isfunction)
               if not n.startswith("_") and n not in ("reset", "get_reward")]
    assert members == ["increment"]
    assert get_json_schema(env.increment) == get_json_schema(Counter().increment)


def test_guarded_environment_reset_error_names_the_environment_and_the_row():
    env = guarded_environment(_spec(), 1.0)()
    with pytest.raises(AlignError, match=r"--environment env.py:Counter: reset raised "
                                         r"ValueError: start must be >= 0 on the row with "
                                         r"columns prompt, start and prompt 'Count up'"):
        env.reset(start=-1, prompt=[{"role": "user", "content": "Count up"}])


# --- end to end: `align rlhf --algo grpo --tools/--environment` on a tiny model --------------
#
# A random tiny model never writes a tool call, so the fixture first teaches one the Hermes
# format (a few hundred plain next-token steps on rendered transcripts, seconds on one core):
# it then calls `multiply` on most prompts, and GRPO runs TRL's tool loop for real.

import json  # noqa: E402
import random  # noqa: E402
from pathlib import Path  # noqa: E402

from align.metrics import read_metrics  # noqa: E402
from align.samples import read_samples  # noqa: E402
from tests.conftest import run_cli, write_jsonl  # noqa: E402

TOOLS_FILE = '''
import time


def multiply(a: int, b: int) -> int:
    """Multiply two integers.

    Args:
        a: The first factor.
        b: The second factor.
    """
    return a * b


def hang(a: int, b: int) -> int:
    """Multiply two integers, slowly.

    Args:
        a: The first factor.
        b: The second factor.
    """
    time.sleep(30)
    return a * b


def right_answer(prompts, completions, answer, **kwargs):
    """1 when the last assistant turn holds the product."""
    out = []
    for messages, want in zip(completions, answer):
        last = [m for m in messages if m["role"] == "assistant"][-1]["content"] or ""
        out.append(1.0 if str(want) in last else 0.0)
    return out


class Tally:
    """An environment with state across turns: a counter the model adds to."""

    def __init__(self):
        self.total = 0
        self.target = 0

    def reset(self, answer, **row):
        self.total, self.target = 0, int(answer)
        return None

    def multiply(self, a: int, b: int) -> int:  # the schema the model learnt; it also tallies
        """Multiply two integers.

        Args:
            a: The first factor.
            b: The second factor.
        """
        self.total += a * b
        return a * b

    def get_reward(self) -> float:
        return 1.0 if self.total == self.target else 0.0
'''
FAST = ["--num-generations", "4", "--max-completion-length", "96",
        "--per-device-train-batch-size", "8", "--lr-scheduler-type", "constant",
        "--warmup-ratio", "0", "--report-to", "none", "--seed", "0", "--logging-steps", "1",
        "--learning-rate", "1e-3", "--beta", "0"]


def _problems(n, seed):
    rng = random.Random(seed)
    return [(rng.randint(2, 9), rng.randint(2, 9)) for _ in range(n)]


def _transcript(a, b):
    call = {"type": "function", "function": {"name": "multiply", "arguments": {"a": a, "b": b}}}
    return [{"role": "user", "content": f"What is {a} * {b}?"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "name": "multiply", "content": str(a * b)},
            {"role": "assistant", "content": f"The answer is {a * b}."}]


@pytest.fixture(scope="module")
def tool_user(tmp_path_factory):
    """A tiny model that has learnt to call `multiply` (Hermes calls, chatml-tools)."""
    from align.templates import apply
    import torch

    from align.tiny import build_tiny_lm, build_tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = tmp_path_factory.mktemp("tool_user")
    exec_globals: dict = {}
    exec(compile(TOOLS_FILE, "tools.py", "exec"), exec_globals)  # the schema's source only
    from align.templates import template_text

    template = template_text("chatml-tools")
    probe = apply(build_tokenizer(), "chatml-tools")
    texts = [probe.apply_chat_template(_transcript(a, b), tools=[exec_globals["multiply"]],
                                       tokenize=False) for a, b in _problems(64, 0)]
    tokenizer = build_tokenizer(texts, vocab_size=512)
    apply(tokenizer, "chatml-tools")
    path = build_tiny_lm(d / "model", tokenizer, seed=0)
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = tok(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    model.train()
    for step in range(150):
        i = torch.randint(0, len(texts), (16,))
        loss = model(input_ids=batch["input_ids"][i], attention_mask=batch["attention_mask"][i],
                     labels=labels[i]).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(path)
    (d / "tools.py").write_text(TOOLS_FILE)
    rows = [{"prompt": [{"role": "user", "content": f"What is {a} * {b}?"}], "answer": a * b}
            for a, b in _problems(16, 1)]
    held_out = [{"prompt": [{"role": "user", "content": f"What is {a} * {b}?"}], "answer": a * b}
                for a, b in _problems(4, 2)]
    return {"model": path, "tools": d / "tools.py", "data": write_jsonl(d / "train.jsonl", rows),
            "eval": write_jsonl(d / "eval.jsonl", held_out), "loss": loss.item()}


def _grpo(tmp_path, capsys, tool_user, extra, steps=3):
    out = tmp_path / "run"
    code, stdout, err = run_cli(
        ["rlhf", "--algo", "grpo", "--model", tool_user["model"], "--dataset", tool_user["data"],
         "--output-dir", out, "--max-steps", str(steps), "--save-steps", str(steps), *FAST,
         *extra], capsys)
    return code, stdout + err, out


def test_grpo_runs_tools_and_logs_agent_metrics(tmp_path, capsys, tool_user):
    t = tool_user["tools"]
    code, text, out = _grpo(tmp_path, capsys, tool_user,
                            ["--tools", f"{t}:multiply", "--reward-fn", f"{t}:right_answer",
                             "--eval-dataset", tool_user["eval"], "--num-generations-eval", "2"])
    assert code == 0, text
    assert "tools: multiply; up to 8 tool-calling turns per rollout" in text
    final = json.loads((out / "final_metrics.json").read_text())
    # held-out episodes run in align's loop with the tool, before and after training
    assert final["eval_tools/calls_per_episode_before"] > 0.5
    assert final["eval_rewards/right_answer_after"] >= 0.0
    rows = [r for r in read_metrics(out / "metrics.jsonl") if "tools/calls_per_episode" in r]
    assert rows, "no agent metrics logged"
    assert max(r["tools/calls_per_episode"] for r in rows) > 0.5  # the model called the tool
    assert all(r["tools/error_frac"] == 0.0 for r in rows)  # and every call ran
    assert all(r["rollout/turns"] > 1.0 for r in rows)
    # samples.jsonl: the turns of shown rollouts (TRL's completions), the call and its result
    shown = read_samples(out)
    called = [r for r in shown if r.get("tool_calls")]
    assert called and [m["role"] for m in called[0]["answer"]][:2] == ["assistant", "tool"]
    assert set(called[0]["rewards"]) == {"right_answer"}
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out)  # the trained model loads back


def test_grpo_with_an_environment_as_the_only_reward(tmp_path, capsys, tool_user):
    """One Tally per rollout, reset with the row's columns, its state kept across turns and
    read by get_reward(), the run's only reward source."""
    code, text, out = _grpo(tmp_path, capsys, tool_user,
                            ["--environment", f"{tool_user['tools']}:Tally"], steps=2)
    assert code == 0, text
    rows = read_metrics(out / "metrics.jsonl")
    assert any("rewards/Tally/mean" in r for r in rows)
    assert max(r.get("tools/calls_per_episode", 0) for r in rows) > 0.5
    assert all(0.0 <= r["rewards/Tally/mean"] <= 1.0 for r in rows if "rewards/Tally/mean" in r)


def test_hanging_tool_times_out_every_call_and_the_run_goes_on(tmp_path, capsys, tool_user):
    slow = tmp_path / "slow.py"  # the `multiply` the model learnt to call, hanging
    slow.write_text(TOOLS_FILE.replace("def multiply(", "def fast(").replace("def hang(",
                                                                               "def multiply("))
    code, text, out = _grpo(tmp_path, capsys, tool_user,
                            ["--tools", f"{slow}:multiply", "--reward-fn", f"{slow}:right_answer",
                             "--tool-timeout", "0.2", "--max-tool-calls", "1",
                             "--health-patience", "1"])
    assert code == 0, text
    rows = [r for r in read_metrics(out / "metrics.jsonl") if r.get("tools/calls_per_episode")]
    assert rows and all(r["tools/error_frac"] == 1.0 for r in rows)  # every call timed out
    assert "tool_errors" in text and "Try:" in text  # the advisory detector, with its hint


def test_tool_problems_are_refused_before_any_model_loads(tmp_path, capsys, tool_user):
    base = ["rlhf", "--model", tool_user["model"], "--dataset", tool_user["data"],
            "--output-dir", tmp_path / "o", "--reward-fn", f"{tool_user['tools']}:right_answer"]
    code, _, err = run_cli(base + ["--algo", "grpo", "--tools", f"{tmp_path}/nope.py:f"], capsys)
    assert code == 2 and "--tools" in err and "nope.py" in err
    code, _, err = run_cli(base + ["--algo", "grpo", "--tools",
                                   f"{tool_user['tools']}:missing"], capsys)
    assert code == 2 and "has no function 'missing'" in err
    # TRL 1.16's RLOOTrainer has no tool loop: the flag is GRPO's
    code, _, err = run_cli(base + ["--algo", "rloo", "--tools",
                                   f"{tool_user['tools']}:multiply"], capsys)
    assert code == 2 and "--tools is not used by --algo rloo" in err
    assert not (tmp_path / "o").exists()
