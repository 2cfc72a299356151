"""Multi-turn PPO end to end on a tiny model that calls a tool (``tiny_tool_sft``): the tool
runs between the model's turns, its tokens are read but never trained, the tool metrics are
logged every step, and what single-turn PPO has keeps working (LoRA, two processes giving the
one-process metrics, SIGKILL + --resume repeating the metrics)."""

from __future__ import annotations

import json

import pytest
import torch

from align.metrics import read_metrics
from align.samples import read_samples
from tests.conftest import run_cli
from tests.ppo.conftest import DOUBLE_TOOL
from tests.ppo.test_e2e import timing


def agent_args(model, data, out, *extra):
    return ["rlhf", "--algo", "ppo", "--model", model, "--dataset", data, "--output-dir", out,
            "--tools", f"{DOUBLE_TOOL}:double", "--reward-funcs", "accuracy",
            "--rollout-batch-size", "8", "--max-new-tokens", "256",
            "--rollout-generate-batch-size", "4", "--per-device-train-batch-size", "8",
            "--lr-scheduler-type", "constant", "--warmup-ratio", "0", "--critic-lr", "1e-3",
            "--ppo-epochs", "2", "--report-to", "none", *extra]


TOOL_METRICS = ("tools/calls_per_episode", "tools/errors_per_episode", "tools/error_frac",
                "tools/cut_by_budget_frac", "rollout/turns", "perf/tools_s", "perf/sample_s")


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_multiturn_ppo_runs_the_tool_and_logs_it(tmp_path, capsys, tiny_tool_sft,
                                                 tool_prompt_files, mode):
    train, held_out = tool_prompt_files
    out = tmp_path / mode
    extra = ["--lora", "--actor-lr", "1e-3"] if mode == "lora" else ["--actor-lr", "2e-4"]
    code, stdout, err = run_cli(agent_args(tiny_tool_sft, train, out, "--max-steps", "3",
                                           "--eval-dataset", held_out, *extra), capsys)
    assert code == 0, err
    assert "multi-turn rollouts: up to 8 tool calls per episode" in stdout
    rows = [r for r in read_metrics(out) if "reward/raw" in r]
    assert len(rows) == 3
    for key in TOOL_METRICS + ("reward/accuracy", "policy/clipfrac", "loss/value"):
        assert key in rows[0], key
    # the SFT model calls the tool: episodes of two turns or more
    assert rows[0]["tools/calls_per_episode"] > 0.5 and rows[0]["rollout/turns"] > 1.5
    evals = [r for r in read_metrics(out) if "eval/reward" in r]
    assert "eval/calls_per_episode" in evals[0]
    final = json.loads((out / "final_metrics.json").read_text())
    assert final["collapsed"] is False
    # samples.jsonl keeps each shown episode's turns: the call, the tool's result, the answer
    shown = read_samples(out)
    assert {r["step"] for r in shown} == {1, 2, 3}
    called = [r for r in shown if r.get("tool_calls")]
    assert called and any(m["role"] == "tool" for m in called[0]["answer"])


def test_multiturn_episodes_mask_the_tool_tokens(tmp_path, tiny_tool_sft, tool_prompt_files):
    """The samples the PPO step trains on: the tool's result is in the sequence, outside the
    mask, and the rest of an episode (the model's turns) inside it."""
    from align.agents.args import AgentArgs
    from align.agents.tools import load_toolset
    from align.ppo.agent_rollout import sample_episodes
    from tests.ppo.conftest import ppo_config, tool_prompts

    cfg = ppo_config(tiny_tool_sft, None, tmp_path / "o", reward_funcs="accuracy",
                     tools=f"{DOUBLE_TOOL}:double")
    from align.ppo.models import load_roles

    roles = load_roles(cfg)
    rows = tool_prompts(4, seed=3)
    samples, episodes, timings = sample_episodes(
        roles, load_toolset(AgentArgs(tools=f"{DOUBLE_TOOL}:double")), rows,
        [f"record {i}" for i in range(4)], max_new_tokens=256, temperature=1.0, top_p=1.0,
        chunk=4, seed=1, first_row=0)
    tok = roles.tokenizer
    called = [i for i, ep in enumerate(episodes) if ep.tool_calls]
    assert called
    for i in called:
        env_text = tok.decode(samples.response_ids[i][samples.env_mask[i]])
        model_text = tok.decode(samples.response_ids[i][samples.mask[i]])
        result = next(m["content"] for m in episodes[i].messages if m["role"] == "tool")
        assert "<tool_response>" in env_text and result in env_text
        assert "<tool_call>" in model_text and "<tool_response>" not in model_text
        assert not (samples.mask[i] & samples.env_mask[i]).any()
    assert timings["tools_s"] >= 0 and timings["sample_s"] > 0


def test_multiturn_episodes_with_the_kv_cache_match_a_fresh_prefill(tmp_path, monkeypatch,
                                                                    tiny_tool_sft):
    """Greedy episodes in groups of 2 rows: keeping each group's KV cache across turns gives
    the same tokens, masks and episodes as prefilling the whole conversation every turn, and
    the cache is used (the later turns read only what follows the cached prefix)."""
    import align.agents.sampler
    from align.agents.args import AgentArgs
    from align.agents.tools import load_toolset
    from align.ppo.agent_rollout import sample_episodes
    from align.ppo.models import load_roles
    from tests.ppo.conftest import ppo_config, tool_prompts

    made = []

    class Recorded(align.agents.sampler.HFSampler):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    monkeypatch.setattr(align.agents.sampler, "HFSampler", Recorded)
    tools = f"{DOUBLE_TOOL}:double"
    roles = load_roles(ppo_config(tiny_tool_sft, None, tmp_path / "o", reward_funcs="accuracy",
                                  tools=tools))
    toolset = load_toolset(AgentArgs(tools=tools))
    rows = tool_prompts(6, seed=4)
    runs = {}
    for reuse in (True, False):
        made.clear()
        samples, episodes, _ = sample_episodes(
            roles, toolset, rows, [f"record {i}" for i in range(6)], max_new_tokens=256,
            temperature=1.0, top_p=1.0, chunk=2, seed=1, first_row=0, greedy=True,
            reuse_cache=reuse)
        runs[reuse] = (samples, episodes, [dict(m.stats) for m in made])
    (a, ep_a, stats_a), (b, ep_b, stats_b) = runs[True], runs[False]
    assert max(ep.turns for ep in ep_a) >= 2  # the tool ran: later turns exist
    for name in ("prompt_ids", "prompt_mask", "response_ids", "mask", "env_mask", "ended"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert [ep.messages for ep in ep_a] == [ep.messages for ep in ep_b]
    assert len(stats_a) == 3  # one sampler (one cache) per group of 2 rows
    fed, reused, fresh = (sum(s[k] for s in stats) for stats, k in
                          ((stats_a, "prefilled"), (stats_a, "reused"), (stats_b, "prefilled")))
    # every conversation token is either read again or taken from the cache, and the later
    # turns took most of theirs from it
    assert sum(s["cached_calls"] for s in stats_a) > 0 and fed + reused == fresh
    assert reused > fresh - reused - sum(len(ep.prompt_ids) for ep in ep_a)
    assert sum(s["cached_calls"] for s in stats_b) == 0


def test_multiturn_two_processes_match_one_process(tmp_path, capsys, tiny_tool_sft,
                                                   tool_prompt_files):
    """Rows 0-3 and 4-7 on two processes: each turn's groups of 4 global rows are sampled
    from the same streams as in one process, so the episodes, and every logged metric, are
    the same."""
    from tests.ppo.test_multiprocess import run_two

    extra = ["--lora", "--actor-lr", "1e-3", "--max-steps", "2", "--save-steps", "100"]
    one, two = tmp_path / "one", tmp_path / "two"
    code, _, err = run_cli(agent_args(tiny_tool_sft, tool_prompt_files[0], one, *extra), capsys)
    assert code == 0, err
    log = run_two(agent_args(tiny_tool_sft, tool_prompt_files[0], two, *extra,
                             "--per-device-train-batch-size", "4"), tmp_path / "two.log")
    assert "over 2 processes (4 each)" in log
    a, b = read_metrics(one), read_metrics(two)
    assert [r["step"] for r in b] == [1, 2]
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for key in (k for k in ra if not timing(k) and k != "tools/seconds"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-4, abs=1e-5), (ra["step"], key)
    assert a[0]["tools/calls_per_episode"] > 0


def test_multiturn_sigkill_then_resume_logs_the_same_metrics(tmp_path, capsys, tiny_tool_sft,
                                                             tool_prompt_files):
    from tests.test_resume_faults import assert_same_rows, killed

    extra = ["--max-steps", "3", "--save-steps", "1", "--actor-lr", "2e-4"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    code, _, err = run_cli(agent_args(tiny_tool_sft, tool_prompt_files[0], whole, *extra),
                           capsys)
    assert code == 0, err
    killed(agent_args(tiny_tool_sft, tool_prompt_files[0], cut, *extra), "at_step:3")
    code, out, err = run_cli(agent_args(tiny_tool_sft, tool_prompt_files[0], cut, *extra,
                                        "--resume"), capsys)
    assert code == 0, err
    assert "resumed from" in out
    assert_same_rows(whole, cut)
