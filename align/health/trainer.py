"""The health monitor around any TRL trainer: DPO family, GRPO, RLOO.

:class:`TrainerHealth` bundles a :class:`~align.health.monitor.HealthMonitor` with two
callbacks:

1. *names*: adds canonical metric names to each train log event (``canonical(logs)``, per
   trainer) before metrics.jsonl is written;
2. *health*: feeds the monitor and ends training on stop/rollback; a non-finite step stops
   training before the Trainer saves a checkpoint of it.

The monitor's state goes into every checkpoint (``align_health.json``, listed in the checkpoint's
marker by :mod:`align.checkpoints`), so ``--resume`` continues its baselines and streaks. The
loop that trains and then rolls back or stops is :func:`align.algos.watched.train_watched`,
through the health driver (:mod:`align.health.driver`) that PPO uses too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import click

from align.health.monitor import HealthEvent, HealthMonitor

HEALTH_STATE = "align_health.json"  # the monitor's state inside each checkpoint (exact resume)
Canonical = Callable[[dict[str, Any]], dict[str, Any]]


def _names_callback(canonical: Canonical | None) -> Any:
    from transformers import TrainerCallback

    class CanonicalMetrics(TrainerCallback):
        """Adds canonical names to each train log event; later callbacks see them."""

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
                   **kwargs: Any) -> None:
            if logs and canonical is not None:
                logs.update(canonical(logs))

    return CanonicalMetrics()


def _health_callback(monitor: HealthMonitor, aliases: dict[str, str] | None,
                     derive: Canonical | None) -> Any:
    """Feeds each log event to ``monitor``; on stop or rollback it ends training and records
    the action in ``callback.action`` (the caller saves, then rolls back or raises)."""
    from transformers import TrainerCallback

    names = aliases or {}

    class HealthCallback(TrainerCallback):
        action = "continue"
        fired_at: int | None = None
        events: list[HealthEvent] = []
        nan_logged_at: int | None = None  # a NaN in the logged metrics (not only the weights)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
                   **kwargs: Any) -> None:
            if not logs or not state.is_world_process_zero:
                return
            metrics = {names.get(k, k): v for k, v in logs.items()}
            if derive is not None:
                metrics.update(derive(logs))
            events = monitor.check(state.global_step, metrics)
            for note in monitor.notes:
                click.echo(f"[health] {note}", err=True)
            monitor.notes.clear()
            for event in events:
                click.echo(str(event), err=True)
            action = monitor.decide(events)
            if action in ("stop", "rollback"):
                self.action, self.fired_at, self.events = action, state.global_step, events
                control.should_training_stop = True
                if any(e.detector == "nan" for e in events):
                    self.nan_logged_at = state.global_step
                    control.should_save = False  # never a checkpoint of a broken step

    return HealthCallback()


class TrainerHealth:
    """A health monitor and its callbacks for one TRL training run."""

    def __init__(self, cfg: Any, resume_from: str | None,
                 canonical: Canonical | None = None, aliases: dict[str, str] | None = None,
                 derive: Canonical | None = None) -> None:
        self.monitor = HealthMonitor(cfg.health, cfg.algo_name)
        if resume_from and (Path(resume_from) / HEALTH_STATE).is_file():
            self.monitor.load_state_dict(
                json.loads((Path(resume_from) / HEALTH_STATE).read_text()))
        self.names_cb = _names_callback(canonical)
        self.health_cb = _health_callback(self.monitor, aliases, derive)

    def callbacks(self, metrics_cb: Any) -> list[Any]:
        """The callbacks in the order they must run: names before the metrics writer."""
        return [self.names_cb, metrics_cb, self.health_cb]

    def state_files(self) -> dict[str, str]:
        """Files to add to each checkpoint before it is marked complete."""
        return {HEALTH_STATE: json.dumps(self.monitor.state_dict())}
