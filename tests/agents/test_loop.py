"""The multi-turn loop: tokens and mask, environment state across turns, budgets, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from align import templates
from align.agents.args import AgentArgs
from align.agents.loop import episode_metrics, render_ids, rollout
from align.agents.tools import load_toolset
from align.errors import AlignError

TOOLS = Path(__file__).with_name("trl_style_tools.py")


@pytest.fixture(scope="module")
def tok(tiny_tokenizer):
    import copy

    return templates.apply(copy.deepcopy(tiny_tokenizer), "chatml-tools")


def call(name, **arguments):
    import json

    return f'<tool_call>\n{{"name": "{name}", "arguments": {json.dumps(arguments)}}}\n</tool_call>'


def scripted(tok, scripts):
    """A sampler that answers row ``k`` (its prompt says 'row k') with ``scripts[k][turn]``."""
    def sample(seqs, limits):
        out = []
        for seq in seqs:
            text = tok.decode(seq)
            k = int(text.split("row ")[1].split()[0].rstrip(".<|"))
            turn = text.count("<|im_start|>assistant") - 1
            out.append(tok.encode(scripts[k][turn], add_special_tokens=False) + [tok.eos_token_id])
        return out
    return sample


def prompt(k):
    return [{"role": "user", "content": f"Play, row {k} ."}]


def test_environment_state_carries_across_turns_and_scores_the_rollout(tok):
    ts = load_toolset(AgentArgs(environment=f"{TOOLS}:WordleLikeEnv"))
    script = [call("guess", number=5), call("guess", number=8), call("guess", number=7), "It is 7."]
    ep, = rollout([{"secret": 7, "high": 9}], [prompt(0)], scripted(tok, [script]), tok, ts,
                  max_completion_length=2000)
    assert [m["content"] for m in ep.messages if m["role"] == "tool"] == \
        ["too low", "too high", "correct"]
    assert ep.environment.guesses == [5, 8, 7] and ep.env_reward == 1.0
    assert ep.messages[0]["content"] == "Play, row 0 . (guess a number from 1 to 9)"  # reset
    assert (ep.turns, ep.tool_calls, ep.tool_errors, ep.truncated, ep.cut_by_budget) == \
        (4, 3, 0, False, False)
    assert ep.messages[-1] == {"role": "assistant", "content": "It is 7."}


def test_mask_marks_exactly_the_sampled_tokens(tok):
    ts = load_toolset(AgentArgs(environment=f"{TOOLS}:WordleLikeEnv"))
    script = [call("guess", number=3), "Done."]
    ep, = rollout([{"secret": 3}], [prompt(0)], scripted(tok, [script]), tok, ts,
                  max_completion_length=2000)
    sampled = [t for t, m in zip(ep.completion_ids, ep.mask) if m]
    written = [t for t, m in zip(ep.completion_ids, ep.mask) if not m]
    end = tok.eos_token
    assert tok.decode(sampled) == script[0] + end + script[1] + end
    assert tok.decode(written) == ("\n<|im_start|>user\n<tool_response>\ncorrect\n"
                                   "</tool_response><|im_end|>\n<|im_start|>assistant\n")
    assert len(ep.mask) == len(ep.completion_ids) and ep.sampled_tokens == len(sampled)
    # the concatenated ids are the chat template's rendering of the transcript
    rendered = render_ids(tok, ep.messages, tools=ts.schemas(), generation_prompt=False)
    assert ep.prompt_ids + ep.completion_ids == rendered[:len(ep.prompt_ids) + len(ep.completion_ids)]
    assert tok.decode(rendered[len(ep.prompt_ids) + len(ep.completion_ids):]) == "\n"


def test_tool_errors_are_shown_counted_and_the_episode_goes_on(tok):
    ts = load_toolset(AgentArgs(tools=f"{TOOLS}:multiply,explode,hang", tool_timeout=0.2))
    script = ["<tool_call>{nope</tool_call>", call("divide", a=1), call("multiply", a=2),
              call("explode", reason="x") + "\n" + call("hang", seconds=10),
              call("multiply", a=2, b=3), "Six."]
    ep, = rollout([{}], [prompt(0)], scripted(tok, [script]), tok, ts, max_completion_length=4000)
    tool_msgs = [m for m in ep.messages if m["role"] == "tool"]
    assert [m["name"] for m in tool_msgs] == ["invalid", "divide", "multiply", "explode", "hang",
                                              "multiply"]
    assert '"error"' in tool_msgs[0]["content"] and tool_msgs[-1]["content"] == "6"
    assert (ep.tool_calls, ep.tool_errors, ep.turns) == (6, 5, 6)
    m = episode_metrics([ep])
    assert m["tools/calls_per_episode"] == 6 and m["tools/error_frac"] == pytest.approx(5 / 6)


def test_calls_past_the_budget_end_the_rollout(tok):
    ts = load_toolset(AgentArgs(tools=f"{TOOLS}:multiply", max_tool_calls=2))
    script = [call("multiply", a=1, b=1), call("multiply", a=1, b=2) + call("multiply", a=1, b=3),
              "never"]
    ep, = rollout([{}], [prompt(0)], scripted(tok, [script]), tok, ts, max_completion_length=4000)
    assert (ep.tool_calls, ep.turns, ep.cut_by_budget) == (1, 2, True)
    assert episode_metrics([ep])["tools/cut_by_budget_frac"] == 1.0


def test_token_budget_truncates_and_counts_every_token(tok):
    ts = load_toolset(AgentArgs(tools=f"{TOOLS}:multiply"))
    script = [call("multiply", a=1, b=1)] * 10
    ep, = rollout([{}], [prompt(0)], scripted(tok, [script]), tok, ts, max_completion_length=120)
    assert ep.truncated and len(ep.completion_ids) <= 120 and len(ep.mask) == len(ep.completion_ids)


def test_a_batch_of_rollouts_of_different_lengths(tok):
    ts = load_toolset(AgentArgs(environment=f"{TOOLS}:WordleLikeEnv"))
    scripts = [["Give up."], [call("guess", number=2), "ok"],
               [call("guess", number=1), call("guess", number=2), "ok"]]
    eps = rollout([{"secret": 2}] * 3, [prompt(k) for k in range(3)], scripted(tok, scripts), tok,
                  ts, max_completion_length=2000)
    assert [e.turns for e in eps] == [1, 2, 3]
    assert [e.env_reward for e in eps] == [0.0, 1.0, 1.0]
    assert len({id(e.environment) for e in eps}) == 3  # one instance per rollout
    assert episode_metrics(eps)["rollout/turns"] == 2.0


def test_several_environments_picked_by_the_environment_column(tok):
    ts = load_toolset(AgentArgs(environment=f"game={TOOLS}:WordleLikeEnv,count={TOOLS}:CounterEnv"))
    rows = [{"environment": "game", "secret": 4}, {"environment": "count"}]
    scripts = [[call("guess", number=4), "ok"], [call("increment", by=2) + call("guess", number=1), "ok"]]
    eps = rollout(rows, [prompt(0), prompt(1)], scripted(tok, scripts), tok, ts,
                  max_completion_length=3000)
    assert eps[0].env_reward == 1.0 and eps[1].env_reward is None
    assert [m["content"] for m in eps[1].messages if m["role"] == "tool"][0] == "2"
    assert "unknown tool 'guess'" in eps[1].messages[3]["content"]  # not this env's tool
    with pytest.raises(AlignError, match=r"data.jsonl: record 2: field 'environment': expected one "
                                         r"of game, count \(--environment\), found 'chess'"):
        ts.check_rows([rows[0], {"environment": "chess"}], "data.jsonl")


def test_reset_that_raises_names_the_row(tok, tmp_path):
    f = tmp_path / "env.py"
    f.write_text("class Env:\n    def reset(self, **row):\n        return row['missing']\n")
    ts = load_toolset(AgentArgs(environment=f"{f}:Env"))
    with pytest.raises(AlignError, match=r"--environment .*env.py:Env: reset raised KeyError: "
                                         r"'missing' on record 7 \(its columns: prompt, x\)"):
        rollout([{"prompt": "p", "x": 1}], [prompt(0)], scripted(tok, [["a"]]), tok, ts,
                max_completion_length=50, labels=["record 7"])


def test_reset_must_return_text_or_none(tok, tmp_path):
    f = tmp_path / "env.py"
    f.write_text("class Env:\n    def reset(self, **row):\n        return 3\n")
    ts = load_toolset(AgentArgs(environment=f"{f}:Env"))
    with pytest.raises(AlignError, match="reset returned a int on row 1"):
        rollout([{}], [prompt(0)], scripted(tok, [["a"]]), tok, ts, max_completion_length=50)


def test_without_tools_the_loop_is_one_turn(tok):
    ep, = rollout([{}], [prompt(0)], scripted(tok, [[call("multiply", a=1, b=2)]]), tok, None,
                  max_completion_length=500)
    assert (ep.turns, ep.tool_calls) == (1, 0) and all(ep.mask)
