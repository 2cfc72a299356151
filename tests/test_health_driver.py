"""align/health/driver.py: the one driver that carries out the monitor's action (set broken
checkpoints aside, roll back, stop) for PPO and the TRL-backed algorithms, tested through a
stand-in adapter on checkpoint directories (the end-to-end runs are in tests/algos/test_nan.py,
tests/algos/test_grpo.py and tests/ppo/test_e2e.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from align.checkpoints import scan
from align.health import CollapseStop, HealthArgs, HealthEvent, HealthMonitor
from align.health.driver import RunHooks, act
from tests.test_checkpoints import make_checkpoint


class Recorder:
    """A run the driver acts on: it records what it was asked to do."""

    def __init__(self, out: Path) -> None:
        self.rolled_back: list[tuple[int, float]] = []
        self.saved = 0
        self.said: list[str] = []
        self.hooks = RunHooks(out=out, algo="dpo", lr_flag="--learning-rate", lr=1e-4,
                              logging_steps=2, roll_back=self.roll_back,
                              save_stopped=self.save_stopped, say=self.said.append)

    def roll_back(self, target, scale: float) -> None:
        self.rolled_back.append((target.step, scale))

    def save_stopped(self) -> str:
        self.saved += 1
        return "The model is saved"


def _monitor(on_collapse: str, **kw) -> HealthMonitor:
    return HealthMonitor(HealthArgs(on_collapse=on_collapse, **kw), "dpo")


def _mute(step: int) -> list[HealthEvent]:
    return [HealthEvent("mute", step, "mean response length 0.1 tokens. Try: raise --beta")]


def test_warn_and_continue_do_nothing(tmp_path):
    run, m = Recorder(tmp_path), _monitor("warn")
    make_checkpoint(tmp_path, 2)
    assert act(run.hooks, m, m.decide(_mute(5)), _mute(5), 5) == "warn"
    assert act(run.hooks, m, m.decide([]), [], 6) == "continue"
    assert (run.rolled_back, run.saved, [c.step for c in scan(tmp_path)[0]]) == ([], 0, [2])


def test_rollback_returns_to_the_newest_healthy_checkpoint_at_a_lower_rate(tmp_path):
    run, m = Recorder(tmp_path), _monitor("rollback", rollback_lr_factor=0.5, max_rollbacks=3)
    make_checkpoint(tmp_path, 2)
    make_checkpoint(tmp_path, 4)
    make_checkpoint(tmp_path, 6, healthy=False)  # saved while the streak ran
    events = _mute(7)
    assert act(run.hooks, m, m.decide(events), events, 7) == "rolled_back"
    assert run.rolled_back == [(4, 0.5)]
    assert [c.step for c in scan(tmp_path)[0]] == [2, 4]  # the collapsing one is gone
    assert run.said == ["[health] rollback 1/3 at step 7: resuming from checkpoint-4 at 0.5 x "
                        "the learning rate (deleted checkpoint-6)"]
    assert act(run.hooks, m, m.decide(events), events, 9) == "rolled_back"
    assert run.rolled_back[-1] == (4, 0.25)  # factor ** rollbacks


def test_rollback_without_a_healthy_checkpoint_saves_and_stops(tmp_path):
    run, m = Recorder(tmp_path), _monitor("rollback")
    make_checkpoint(tmp_path, 2, healthy=False)
    with pytest.raises(CollapseStop) as stop:
        act(run.hooks, m, m.decide(_mute(3)), _mute(3), 3)
    assert run.saved == 1 and run.rolled_back == []
    assert "stopping instead" in run.said[-1]
    assert str(stop.value).startswith("training stopped by --on-collapse rollback at step 3 "
                                      "(mute at step 3). The model is saved; ")


def test_out_of_rollbacks_says_so_and_stops(tmp_path):
    run, m = Recorder(tmp_path), _monitor("rollback", max_rollbacks=0)
    make_checkpoint(tmp_path, 2)
    with pytest.raises(CollapseStop):
        act(run.hooks, m, m.decide(_mute(3)), _mute(3), 3)
    assert run.saved == 1
    assert run.said == ["[health] 0 rollbacks already (--max-rollbacks); stopping instead"]


def _nan_run(tmp_path, on_collapse):
    run, m = Recorder(tmp_path), _monitor(on_collapse)
    for step in (2, 4, 6):
        make_checkpoint(tmp_path, step)
    events = m.check(7, {"loss": float("nan")})
    return run, m, events


@pytest.mark.parametrize("on_collapse", ["warn", "stop"])
def test_nan_sets_the_checkpoints_that_made_it_aside_and_saves_nothing(tmp_path, on_collapse):
    run, m, events = _nan_run(tmp_path, on_collapse)
    with pytest.raises(CollapseStop) as stop:
        act(run.hooks, m, m.decide(events), events, 7, nan_logged_at=7)
    # the NaN logged at step 7 came from the weights of step 5 (--logging-steps 2) or later
    assert [c.step for c in scan(tmp_path)[0]] == [2, 4]
    assert sorted(p.name for p in tmp_path.glob("nan-*")) == ["nan-checkpoint-6"]
    assert run.saved == 0
    message = str(stop.value)
    assert message.startswith("training stopped: at step 7, non-finite values (NaN/inf): "
                              "loss = nan. No model was saved from this state; the last finite "
                              "checkpoint is ")
    assert "--resume --learning-rate 1e-05 --resume-allow-change learning-rate" in message


def test_nan_under_rollback_returns_to_the_last_checkpoint_before_it(tmp_path):
    run, m, events = _nan_run(tmp_path, "rollback")
    assert act(run.hooks, m, m.decide(events), events, 7, nan_logged_at=7) == "rolled_back"
    assert run.rolled_back == [(4, 0.5)] and run.saved == 0
    assert [p.name for p in tmp_path.glob("nan-*")] == ["nan-checkpoint-6"]
