"""Metrics to ``metrics.jsonl`` (one JSON object per logged step, with ``step``) and TensorBoard.

Shared by every trainer: TRL-backed runs forward their logs through :class:`TrainerMetrics`,
align's own loops call :meth:`MetricsLogger.log` directly. On resume, lines logged after the
checkpoint's step are dropped first, so a resumed run's file reads as if it never stopped.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as strings so the line still parses everywhere."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLogger:
    """Append metrics to ``output_dir/metrics.jsonl`` and, when installed, TensorBoard."""

    def __init__(self, output_dir: str | Path, *, tensorboard: bool = True,
                 resume_step: int | None = None, wandb: dict[str, Any] | None = None) -> None:
        self.path = Path(output_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            # rows logged after the checkpoint, and the interrupted run's end-of-training
            # summary (a never-stopped run has none at that step), are dropped
            keep = [r for r in read_metrics(self.path)
                    if r.get("step", 0) <= resume_step and "train_runtime" not in r]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in keep), encoding="utf-8")
        elif resume_step is None:
            self.path.write_text("", encoding="utf-8")
        self._fh = self.path.open("a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(output_dir) / "tensorboard"))
            except ImportError:
                self._tb = None  # tensorboard not installed: metrics.jsonl alone
        self._wandb = wandb_run(wandb) if wandb is not None else None

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        row = {"step": int(step), "time": round(time.time(), 3)}
        row.update({k: _clean(v) for k, v in metrics.items()})
        self._fh.write(json.dumps(row) + "\n")
        self._fh.flush()
        if self._tb is not None:
            for key, value in row.items():
                if key not in ("step", "time") and isinstance(value, (int, float)) \
                        and not isinstance(value, bool):
                    self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in row.items() if k not in ("step", "time")
                             and isinstance(v, (int, float)) and not isinstance(v, bool)},
                            step=int(step))

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def wandb_run(options: dict[str, Any]) -> Any:
    """A Weights & Biases run (``wandb.init(**options)``); WANDB_MODE=offline keeps it local."""
    import wandb

    return wandb.init(**options)


def run_logger(cfg: Any, output_dir: str | Path, resume_step: int | None = None
               ) -> MetricsLogger:
    """The MetricsLogger of a training run: metrics.jsonl, and TensorBoard and Weights & Biases
    as --report-to says (``all``: those installed). The W&B run is named --run-name (default:
    the output directory's name), in project $WANDB_PROJECT (default ``align``), with the
    resolved config; its files go to $WANDB_DIR or the output directory."""
    import importlib.util
    import os

    loggers = cfg.train.loggers()
    wandb = None
    wanted = "wandb" in loggers and ("all" not in cfg.train.report_to
                                     or importlib.util.find_spec("wandb") is not None)
    if wanted:
        wandb = {"project": os.environ.get("WANDB_PROJECT", "align"),
                 "name": cfg.train.run_name or Path(output_dir).resolve().name,
                 "config": cfg.to_dict(), "dir": os.environ.get("WANDB_DIR") or str(output_dir)}
    return MetricsLogger(output_dir, tensorboard="tensorboard" in loggers,
                         resume_step=resume_step, wandb=wandb)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a metrics.jsonl file (a directory is taken to hold one)."""
    p = Path(path)
    if p.is_dir():
        p = p / METRICS_FILE
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def trainer_callback(logger: MetricsLogger) -> Any:
    """A transformers TrainerCallback that forwards each log event to ``logger``."""
    from transformers import TrainerCallback

    class TrainerMetrics(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
                   **kwargs: Any) -> None:
            if logs and state.is_world_process_zero:
                logger.log(state.global_step, logs)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            logger.close()

    return TrainerMetrics()
