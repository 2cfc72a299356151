"""Collapse detectors: each fires on its forced pattern, none fires on a healthy run."""

from __future__ import annotations

import math

import pytest

from align.health import (HealthArgs, HealthMonitor, repeated_ngram_frac, rollout_stats)


def test_repeated_ngram_frac_by_hand():
    # 1 2 3 4 1 2 3 4: 4-grams (1234)(2341)(3412)(4123)(1234) -> 5 total, 4 distinct -> 1/5
    assert repeated_ngram_frac([1, 2, 3, 4, 1, 2, 3, 4]) == pytest.approx(0.2)
    assert repeated_ngram_frac([7] * 10) == pytest.approx(1 - 1 / 7)
    assert repeated_ngram_frac([1, 2, 3]) == 0.0


def test_rollout_stats_by_hand():
    stats = rollout_stats([[1, 2], [3, 3, 3, 3, 3, 3], [4]], ended=[True, False, True],
                          max_new_tokens=6)
    assert stats["rollout/response_len"] == pytest.approx(3.0)
    assert stats["rollout/eos_frac"] == pytest.approx(2 / 3)
    assert stats["rollout/truncated_frac"] == pytest.approx(1 / 3)
    assert stats["rollout/repeat_frac"] == pytest.approx((1 - 1 / 3) / 3)


def _healthy(step):
    return {"rollout/response_len": 20 + (step % 3), "rollout/truncated_frac": 0.05,
            "rollout/repeat_frac": 0.02, "objective/kl": 0.5 * step, "loss/policy": 0.1}


def _run(monitor, rows):
    fired = []
    for step, row in enumerate(rows, start=1):
        fired += [e.detector for e in monitor.check(step, row)]
    return fired


def test_healthy_run_stays_quiet():
    assert _run(HealthMonitor(HealthArgs()), [_healthy(s) for s in range(40)]) == []


def test_repeater_fires_after_patience():
    rows = [_healthy(0)] * 3 + [{**_healthy(0), "rollout/truncated_frac": 0.95,
                                 "rollout/repeat_frac": 0.6}] * 3
    m = HealthMonitor(HealthArgs(health_patience=3))
    assert _run(m, rows) == ["repeater"]
    assert "ran to the token limit" in m.events[0].message and "Try:" in m.events[0].message


def test_repeater_needs_repetition_when_it_is_logged():
    rows = [_healthy(0)] * 2 + [{**_healthy(0), "rollout/truncated_frac": 0.95,
                                 "rollout/repeat_frac": 0.0}] * 5
    assert _run(HealthMonitor(HealthArgs()), rows) == []


def test_repeater_off_when_truncating_from_the_start():
    rows = [{**_healthy(0), "rollout/truncated_frac": 0.9, "rollout/repeat_frac": 0.9}] * 6
    m = HealthMonitor(HealthArgs())
    assert _run(m, rows) == [] and "before training" in m.notes[0]


def test_mute_fires_on_vanishing_responses():
    rows = [_healthy(0)] * 2 + [{**_healthy(0), "rollout/response_len": 0.5}] * 3
    assert _run(HealthMonitor(HealthArgs()), rows) == ["mute"]


def test_mute_streak_resets_on_recovery():
    short = {**_healthy(0), "rollout/response_len": 0.5}
    rows = [_healthy(0), short, short, _healthy(0), short, short]
    assert _run(HealthMonitor(HealthArgs()), rows) == []


def test_kl_blowup():
    rows = [_healthy(0)] * 2 + [{**_healthy(0), "objective/kl": 500.0}] * 3
    assert _run(HealthMonitor(HealthArgs()), rows) == ["kl_blowup"]


@pytest.mark.parametrize("bad", [math.nan, math.inf, "nan"])
def test_nan_fires_at_once(bad):
    m = HealthMonitor(HealthArgs())
    events = m.check(1, {"loss/policy": bad, "rollout/response_len": 3})
    assert [e.detector for e in events] == ["nan"]


def test_likelihood_displacement():
    rows = [{"logps/chosen": -20.0, "rewards/margins": 0.0}] * 3  # the baseline steps
    rows += [{"logps/chosen": -20.0 - 4 * i, "rewards/margins": 0.5 * i} for i in range(1, 8)]
    m = HealthMonitor(HealthArgs())
    fired = _run(m, rows)
    assert fired and fired[0] == "likelihood_displacement"
    assert "-20.00" in m.events[0].message


def test_baseline_is_a_mean_so_one_noisy_first_batch_is_no_false_alarm():
    # KTO-like: the first batch happens to hold easy desirable answers (-7), later ones ~ -11
    rows = [{"logps/chosen": -7.0, "rewards/margins": 0.0},
            {"logps/chosen": -11.0, "rewards/margins": 0.1},
            {"logps/chosen": -12.0, "rewards/margins": 0.1}]
    rows += [{"logps/chosen": -11.5 + (i % 2), "rewards/margins": 0.2 + 0.1 * i}
             for i in range(20)]
    m = HealthMonitor(HealthArgs())
    assert _run(m, rows) == []
    assert m.baseline.chosen_logps == pytest.approx(-10.0)
    # with a one-step baseline the same run would have fired
    assert "likelihood_displacement" in _run(
        HealthMonitor(HealthArgs(health_baseline_steps=1)), rows)


def test_no_displacement_when_chosen_rises():
    rows = [{"logps/chosen": -20.0 + i, "rewards/margins": 0.5 * i} for i in range(10)]
    assert _run(HealthMonitor(HealthArgs()), rows) == []


def test_decide_rollback_is_bounded():
    m = HealthMonitor(HealthArgs(on_collapse="rollback", max_rollbacks=2))
    ev = m.check(1, {"loss": math.nan})
    assert [m.decide(ev) for _ in range(3)] == ["rollback", "rollback", "stop"]
    assert m.decide([]) == "continue"


def test_state_dict_roundtrip_continues_streaks():
    bad = {**_healthy(0), "rollout/response_len": 0.5}
    a = HealthMonitor(HealthArgs())
    _run(a, [_healthy(0)] * 3 + [bad, bad])
    b = HealthMonitor(HealthArgs())
    b.load_state_dict(a.state_dict())
    assert [e.detector for e in b.check(6, bad)] == ["mute"]


def test_invalid_on_collapse():
    with pytest.raises(ValueError, match="choose from"):
        HealthArgs(on_collapse="panic")


@pytest.mark.parametrize("key", ["loss", "grad_norm", "logps/chosen", "grad/actor_norm",
                                 "reward/raw", "reward", "logits/rejected"])
def test_nan_watches_losses_gradients_logprobs_and_rewards(key):
    assert [e.detector for e in HealthMonitor(HealthArgs()).check(1, {key: math.nan})] == ["nan"]


def test_nan_ignores_what_may_be_nan_by_design():
    # TRL logs a reward function's mean as NaN when it abstained on every completion
    assert HealthMonitor(HealthArgs()).check(1, {"rewards/health_probe/mean": math.nan}) == []


def test_nan_stops_the_run_even_under_warn():
    m = HealthMonitor(HealthArgs(on_collapse="warn"))
    assert m.decide(m.check(1, {"loss": math.nan})) == "stop"
    assert m.decide(m.check(2, {"objective/kl": 500.0, "rollout/response_len": 3})) == "continue"


def test_skipped_updates_stop_after_a_streak_not_at_once():
    m = HealthMonitor(HealthArgs(health_patience=3))
    rows = [{"grad/skipped_updates": 2.0}, {"grad/skipped_updates": 0.0}] + \
        [{"grad/skipped_updates": 1.0}] * 3
    assert _run(m, rows) == ["nan"]
    assert m.events[0].step == 5 and "3 steps in a row" in m.events[0].message


def test_healthy_is_false_while_a_streak_runs():
    m = HealthMonitor(HealthArgs())
    m.check(1, _healthy(1))
    assert m.healthy()
    m.check(2, {**_healthy(2), "rollout/response_len": 0.1})  # baseline not set yet: no streak
    _run(m, [_healthy(0)] * 3)
    m.check(9, {**_healthy(0), "rollout/response_len": 0.1})
    assert not m.healthy()


@pytest.mark.parametrize("algo,flag,absent", [
    ("dpo", "--rpo-alpha", "--cpo-alpha"), ("cpo", "--cpo-alpha", "--rpo-alpha"),
    ("kto", "--learning-rate", "--rpo-alpha"), ("orpo", "--beta", "--rpo-alpha")])
def test_displacement_hints_name_only_the_algorithms_own_flags(algo, flag, absent):
    from align.health.hints import hint

    text = hint("likelihood_displacement", algo)
    assert flag in text and absent not in text


def test_ppo_hints_name_ppo_flags():
    from align.health.hints import hint

    assert "--actor-lr" in hint("nan", "ppo") and "--learning-rate" in hint("nan", "dpo")
    assert "--missing-eos-penalty" in hint("repeater", "ppo")
    assert "--missing-eos-penalty" not in hint("repeater", "grpo")


def test_ppo_skips_a_non_finite_update():
    import torch

    from align.ppo.state import Optim
    from align.ppo.update import optimizer_step

    model = torch.nn.Linear(3, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    optim = Optim(opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0))
    params = [list(model.parameters())]
    before = [p.detach().clone() for p in model.parameters()]
    (model(torch.tensor([[1.0, math.nan, 0.0]])).sum()).backward()
    assert math.isnan(optimizer_step(optim, params, max_grad_norm=1.0)[0])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    assert math.isfinite(optimizer_step(optim, params, max_grad_norm=1.0)[0])
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_rollback_rule_returns_to_the_newest_healthy_checkpoint(tmp_path):
    from align.health.rollback import rollback_lr_scale, rollback_target
    from tests.test_checkpoints import make_checkpoint

    assert rollback_target(tmp_path) is None
    make_checkpoint(tmp_path, 2)
    make_checkpoint(tmp_path, 4)
    make_checkpoint(tmp_path, 6, healthy=False)  # saved while a streak ran
    assert rollback_target(tmp_path).step == 4
    assert rollback_lr_scale(0.5, 1) == 0.5 and rollback_lr_scale(0.5, 3) == 0.125


# --- online detectors of issue 19: drift without gain, a critic that does not learn, responses
# that never end (pure functions, then through the monitor) ---------------------------------

def test_kl_drift_by_hand():
    from align.health.detectors import kl_drift

    # KL halves 0.5, 0.5 | 2.5, 2.5 -> rise 2.0; reward 1, 0, | 1, 0 -> gain 0, spread 0.58
    assert "rose by 2.00 nats" in kl_drift([0.5, 0.5, 2.5, 2.5], [1, 0, 1, 0], 4, 1.0)
    # the same KL with the reward rising by 1.0 (> half its spread 0.58): earned, quiet
    assert kl_drift([0.5, 0.5, 2.5, 2.5], [0, 0, 1, 1], 4, 1.0) is None
    assert kl_drift([0.5, 0.5, 1.0, 1.0], [1, 0, 1, 0], 4, 1.0) is None  # rose by 0.5 only
    assert kl_drift([0.5, 2.5, 2.5], [1, 0, 1], 4, 1.0) is None  # not enough steps yet


def test_critic_stuck_and_never_ends_by_hand():
    from align.health.detectors import critic_stuck, never_ends

    assert critic_stuck([0.3, -0.1, 0.0, -0.4], 3) is not None
    assert critic_stuck([-0.1, 0.05, -0.4], 3) is None  # one step explained something
    assert critic_stuck([-0.1, -0.2], 3) is None
    assert "0% of responses ended" in never_ends([0.5, 0.0, 0.0, 0.0], 3, 0.05)
    assert never_ends([0.0, 0.1, 0.0], 3, 0.05) is None


def test_issue_19_run_advises_once_then_acts_when_the_detectors_keep_firing():
    """The run of issue 19: KL rising to 3.7 nats, reward flat and noisy, explained variance
    around 0, no response ending. Each online detector first advises, with its hint; one that
    still fires --advice-patience (3) logged steps later is persistent, and --on-collapse
    rollback acts on it; critic_stuck repeats its advice but never acts (ADVICE_ONLY)."""
    monitor = HealthMonitor(HealthArgs(on_collapse="rollback"), "ppo")
    rewards = [0.6, 0.3, 0.9, 0.5, 1.0, 0.4, 0.7, 0.3, 0.8, 0.5, 0.6, 0.4]
    events, actions = [], {}
    for step, reward in enumerate(rewards, start=1):
        row = {"objective/kl": 0.3 * step, "reward/raw": reward, "rollout/eos_frac": 0.0,
               "value/explained_var": -0.05 if step % 2 else 0.0, "loss/policy": 0.1}
        fired = monitor.check(step, row)
        actions[step] = monitor.decide(fired)
        events += fired
    seen = [(e.step, e.detector, e.persistent) for e in events]
    # first alarms: no_eos after 3 steps, critic after 5, KL drift once its window of 8 is
    # full; each again 3 logged steps later, persistent
    assert seen == [(3, "no_eos", False), (5, "critic_stuck", False), (6, "no_eos", True),
                    (8, "kl_drift", False), (8, "critic_stuck", False), (11, "kl_drift", True)]
    assert {s for s, a in actions.items() if a != "continue"} == {6, 11}
    assert actions[6] == actions[11] == "rollback"
    by_name = {(e.detector, e.persistent): e for e in events}
    assert "--reward-at-turn-end" in str(by_name["no_eos", False])
    assert "--missing-eos-penalty" in str(by_name["no_eos", False])
    assert "still, 3 logged steps after the first alarm" in str(by_name["no_eos", True])
    assert "--reward-at-turn-end" in str(by_name["critic_stuck", False])
    assert "--critic-warmup-steps" in str(by_name["critic_stuck", False])
    assert "advice only" in str(by_name["critic_stuck", False])
    assert "--kl-coef" in str(by_name["kl_drift", False])
    # each hint names the remedy that worked on SmolLM2: the missing-EOS penalty of 5
    assert "--missing-eos-penalty, 5.0 by default" in str(by_name["no_eos", False])
    assert "--missing-eos-penalty, 5.0 by default" in str(by_name["kl_drift", False])
    assert not monitor.healthy()  # a checkpoint saved now is no rollback target
    assert monitor.summary()["collapsed"] is True
    # the state round-trips (exact resume): no repeat after reloading
    again = HealthMonitor(HealthArgs(), "ppo")
    again.load_state_dict(monitor.state_dict())
    assert again.check(13, {"objective/kl": 4.0, "reward/raw": 0.5, "rollout/eos_frac": 0.0,
                            "value/explained_var": -0.1}) == []


def test_online_detectors_act_under_stop_and_only_warn_under_warn():
    for on_collapse, action in (("stop", "stop"), ("warn", "warn")):
        monitor = HealthMonitor(HealthArgs(on_collapse=on_collapse), "ppo")
        actions = [monitor.decide(monitor.check(step, {"rollout/eos_frac": 0.0}))
                   for step in range(1, 8)]
        assert actions == ["continue"] * 5 + [action, "continue"]


def test_online_detectors_advise_only_with_advice_patience_0():
    monitor = HealthMonitor(HealthArgs(on_collapse="stop", advice_patience=0), "ppo")
    events = [e for step in range(1, 13) for e in monitor.check(step, {"rollout/eos_frac": 0.0})]
    assert [(e.step, e.persistent) for e in events] == [(3, False)]
    assert monitor.decide(events) == "continue"


def test_an_alarm_that_stops_holding_never_acts():
    """The run that worked in issue 26 raised one kl_drift alarm at step 10 and went on to the
    best result: an alarm whose condition clears before --advice-patience steps is advice."""
    monitor = HealthMonitor(HealthArgs(on_collapse="stop"), "ppo")
    eos = [0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.6, 0.9, 1.0]  # holds 1-4, 6-9
    actions, events = [], []
    for step, frac in enumerate(eos, start=1):
        fired = monitor.check(step, {"rollout/eos_frac": frac})
        events += fired
        actions.append(monitor.decide(fired))
    assert [(e.step, e.persistent) for e in events] == [(3, False), (8, False)]
    assert set(actions) == {"continue"}


def test_online_detectors_quiet_on_a_learning_run():
    monitor = HealthMonitor(HealthArgs())
    events = []
    for step in range(1, 13):
        events += monitor.check(step, {"objective/kl": 0.3 * step, "reward/raw": 0.2 * step,
                                       "rollout/eos_frac": 0.8, "value/explained_var": 0.3})
    assert events == []


def test_advisory_events_are_listed_but_are_no_collapse():
    monitor = HealthMonitor(HealthArgs())
    for step in range(1, 4):
        monitor.check(step, {"rollout/eos_frac": 0.0})
    summary = monitor.summary()
    assert summary["collapsed"] is False and "no_eos" in summary["health_events"][0]


# --- agents: tool use collapsing, error storms (runs with tools) -----------------------------

def _agent(step, calls=1.0, errors=0.0):
    return {**_healthy(step), "tools/calls_per_episode": calls, "tools/error_frac": errors}


def test_tool_collapse_fires_after_patience_when_calls_fall_to_zero():
    # baseline: the mean of the first 3 steps' calls, (1.0 + 1.2 + 0.8) / 3 = 1.0; the limit
    # is 0.1 x 1.0 = 0.1 calls per episode, reached by 0.05 for 3 steps in a row
    rows = [_agent(0, 1.0), _agent(1, 1.2), _agent(2, 0.8)] + [_agent(3, 0.05)] * 3
    m = HealthMonitor(HealthArgs())
    assert _run(m, rows) == ["tool_collapse"]
    assert "0.05 tool calls per episode (at start: 1.00; limit 0.10)" in m.events[0].message
    assert "Try:" in m.events[0].message and m.decide(m.events) == "warn"


def test_tool_collapse_quiet_when_calls_recover_or_never_started():
    dip = [_agent(0)] * 3 + [_agent(3, 0.0), _agent(4, 0.0), _agent(5, 0.5), _agent(6, 0.0)]
    assert _run(HealthMonitor(HealthArgs()), dip) == []
    # a model that never called its tools (0.1 < --tool-collapse-min-calls 0.2) cannot stop
    never = [_agent(s, 0.1) for s in range(3)] + [_agent(3, 0.0)] * 5
    assert _run(HealthMonitor(HealthArgs()), never) == []


def test_tool_errors_storm_is_advisory():
    rows = [_agent(0)] * 2 + [_agent(2, 1.0, 0.75)] * 3
    m = HealthMonitor(HealthArgs(on_collapse="stop"))
    assert _run(m, rows) == ["tool_errors"]
    assert "75% of 1.00 tool calls per episode failed" in m.events[0].message
    # a broken tool is not cured by going back: stop/rollback ignore it, the summary too
    assert m.decide(m.events) == "continue" and m.summary()["collapsed"] is False


def test_tool_errors_quiet_below_the_threshold_and_without_calls():
    assert _run(HealthMonitor(HealthArgs()), [_agent(0, 1.0, 0.4)] * 5) == []
    # no calls, no storm (and no collapse: the run never called its tools)
    assert _run(HealthMonitor(HealthArgs()), [_agent(0, 0.0, 1.0)] * 5) == []


def test_tool_baseline_survives_resume():
    m = HealthMonitor(HealthArgs())
    _run(m, [_agent(0, 2.0)] * 3)
    again = HealthMonitor(HealthArgs())
    again.load_state_dict(m.state_dict())
    assert again.baseline.tool_calls == 2.0
    assert _run(again, [_agent(3, 0.0)] * 3) == ["tool_collapse"]


def test_no_eos_on_grpo_whose_answers_were_cut_from_the_start_stays_advice():
    """A GRPO/RLOO run whose answers hit the token limit before training (noted at the start)
    is not stopped by no_eos: training did not cause it. PPO, and a GRPO run whose answers
    used to end, act on it as above."""
    cut = {"rollout/eos_frac": 0.0, "rollout/truncated_frac": 0.96, "rollout/response_len": 16}
    ended = {"rollout/eos_frac": 0.6, "rollout/truncated_frac": 0.1, "rollout/response_len": 9}

    def actions(algo: str, start: dict) -> list[str]:
        monitor = HealthMonitor(HealthArgs(on_collapse="stop", health_baseline_steps=1), algo)
        monitor.check(0, start)  # the baseline
        return [monitor.decide(monitor.check(step, cut)) for step in range(1, 8)]

    assert "stop" not in actions("grpo", cut)
    assert "stop" in actions("ppo", cut)
    assert "stop" in actions("grpo", ended)


# Two real PPO runs on SmolLM2-135M-Instruct (issue 26; docs/ppo.md, "Defaults on a real chat
# model"): each step's detector inputs from its metrics.jsonl, rounded to 3 decimals.
# Good: from the base model, λ 1, the penalty of 5 and --actor-lr 3e-5 (its defaults when it
# ran), seed 0; held-out gold 0.02 -> 0.12, the answers
# ending from step 11 while the critic explained none of the returns in 18 of 20 steps.
GOOD_RUN = {
    "reward/raw": [-5.227, -4.077, -4.706, -3.458, -3.1, -4.003, -4.246, -1.826, -3.633, -2.745,
                   -1.775, -0.847, -2.623, -0.908, -1.698, 0.232, 0.276, 2.292, -1.78, -0.121],
    "objective/kl": [0.0, 0.477, 2.052, 4.114, 2.781, 2.196, 3.444, 5.496, 6.191, 8.602, 6.878,
                     11.538, 12.332, 12.339, 11.037, 9.275, 11.365, 12.918, 7.913, 13.269],
    "value/explained_var": [-4.723, -0.586, -2.934, -0.14, -0.042, -0.148, -0.219, -0.074,
                            -0.079, 0.206, -0.029, -0.084, -0.075, -0.007, -0.183, 0.052,
                            -0.029, -0.011, -0.082, -0.078],
    "rollout/eos_frac": [0.0, 0.0, 0.0, 0.0, 0.25, 0.125, 0.0, 0.25, 0.125, 0.0, 0.5, 0.75, 0.5,
                         0.5, 0.875, 0.625, 0.625, 0.875, 0.75, 0.75],
}
# Bad: from the SFT stage at --actor-lr 3e-5, seed 0; dev gold 0.31 -> 0.15: the reward model
# already scored the SFT answers near the references', the reward stayed flat while KL rose to
# 11 nats, and the greedy answers turned into loops.
BAD_RUN = {
    "reward/raw": [4.315, 2.761, 4.451, 2.575, 4.308, 2.756, 3.439, 3.958, 4.454, 2.247, 4.072,
                   3.593, 4.281, 3.626, 2.825, 3.115, 3.868, 3.612, 2.453, 4.375],
    "objective/kl": [0.0, 0.143, 0.969, 1.315, 0.885, 2.071, 2.486, 4.811, 5.678, 7.722, 6.827,
                     7.625, 6.671, 8.374, 11.063, 6.099, 5.716, 9.866, 8.163, 4.594],
    "value/explained_var": [-2.256, 0.019, -8.084, 0.179, -4.713, -0.062, 0.196, -0.686, -9.535,
                            0.031, -0.791, -0.014, -2.155, 0.341, 0.218, 0.32, -0.244, 0.378,
                            0.06, -8.323],
    "rollout/eos_frac": [1.0, 0.875, 1.0, 1.0, 1.0, 1.0, 0.875, 1.0, 1.0, 0.875, 1.0, 1.0, 1.0,
                         1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
}


def _replay(run, advice_only=None, monkeypatch=None):
    """(events as (step, detector, persistent), the first step --on-collapse stop acts at)."""
    if advice_only is not None:
        monkeypatch.setattr("align.health.detectors.ADVICE_ONLY", advice_only)
    monitor = HealthMonitor(HealthArgs(on_collapse="stop"), "ppo")
    seen, stop = [], None
    for i in range(len(run["reward/raw"])):
        fired = monitor.check(i + 1, {k: v[i] for k, v in run.items()})
        seen += [(e.step, e.detector, e.persistent) for e in fired]
        if stop is None and monitor.decide(fired) == "stop":
            stop = i + 1
    return seen, stop


def test_online_detectors_act_on_the_bad_smollm2_run_and_not_on_the_good_one(monkeypatch):
    """On the run that worked, no_eos advises once (the base model's answers end from step 5)
    and kl_drift once, and critic_stuck keeps firing but is advice only: under --on-collapse
    stop the run goes to the end. Had critic_stuck acted, as before issue 26's third pass, it
    would have stopped the run at step 8, with the answers not yet ending. On the run that
    failed, kl_drift (KL up, reward flat) is persistent at step 11 and stops it."""
    seen, stop = _replay(GOOD_RUN)
    assert seen == [(3, "no_eos", False), (5, "critic_stuck", False), (8, "critic_stuck", False),
                    (9, "kl_drift", False), (15, "critic_stuck", False)]
    assert stop is None
    _, stop = _replay(GOOD_RUN, frozenset(), monkeypatch)
    assert stop == 8
    monkeypatch.undo()
    seen, stop = _replay(BAD_RUN)
    assert seen == [(8, "kl_drift", False), (11, "kl_drift", True), (15, "kl_drift", False)]
    assert stop == 11


def test_nonfinite_parameters_finds_nan_and_inf_but_not_a_sum_that_overflows():
    """Each broken tensor is named (NaN, +inf, -inf, and +inf beside -inf, whose sum is NaN);
    a finite tensor whose float32 sum overflows (two values of 3e38) is not, nor a finite
    half-precision one whose sum exceeds float16's range; frozen parameters count only when
    none is trainable."""
    import torch

    from align.health.nonfinite import nonfinite_parameters

    big = 3e38
    model = torch.nn.ParameterDict({
        "ok": torch.nn.Parameter(torch.ones(4)),
        "nan": torch.nn.Parameter(torch.tensor([1.0, float("nan")])),
        "inf": torch.nn.Parameter(torch.tensor([float("inf"), 1.0])),
        "neg_inf": torch.nn.Parameter(torch.tensor([float("-inf"), 1.0])),
        "both_inf": torch.nn.Parameter(torch.tensor([float("inf"), float("-inf")])),
        "big": torch.nn.Parameter(torch.tensor([big, big])),
        "fp16": torch.nn.Parameter(torch.full((4,), 60000.0, dtype=torch.float16)),
        "frozen_nan": torch.nn.Parameter(torch.tensor([float("nan")]), requires_grad=False),
    })
    assert sorted(nonfinite_parameters(model)) == ["both_inf", "inf", "nan", "neg_inf"]
    frozen = torch.nn.ParameterDict({
        "a": torch.nn.Parameter(torch.tensor([float("nan")]), requires_grad=False),
        "b": torch.nn.Parameter(torch.ones(2), requires_grad=False)})
    assert nonfinite_parameters(frozen, None) == ["a"]
