"""Metrics to ``metrics.jsonl`` (one JSON object per logged step, with ``step``) and TensorBoard.

Shared by every trainer: TRL-backed runs forward their logs through :class:`TrainerMetrics`,
align's own loops call :meth:`MetricsLogger.log` directly. On resume, lines logged after the
checkpoint's step are dropped once the checkpoint is restored, so a resumed run's file reads as
if it never stopped.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
# Running totals some trainers do not keep in their checkpoints (TRL's DPO, KTO, SFT and reward
# trainers count num_tokens in an attribute): a resumed run continues them from the checkpoint.
COUNTERS = ("num_tokens",)


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as strings so the line still parses everywhere."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLogger:
    """Append metrics to ``output_dir/metrics.jsonl`` and, when installed, TensorBoard.

    Nothing is touched until :meth:`open` (called by the first :meth:`log`): a resumed run
    opens its logger only once the checkpoint is restored, so a resume that fails leaves the
    metrics of the interrupted run as they were. With ``resume_step``, rows logged after that
    step are dropped then (rewritten atomically), and TensorBoard purges its events after it
    (``purge_step``), so no step appears twice in either.
    """

    def __init__(self, output_dir: str | Path, *, tensorboard: bool = True,
                 resume_step: int | None = None, wandb: dict[str, Any] | None = None) -> None:
        self.dir = Path(output_dir)
        self.path = self.dir / METRICS_FILE
        self.tensorboard = tensorboard
        self.resume_step = resume_step
        self._fh: Any = None
        self._tb: Any = None
        self.wandb = wandb  # wandb.init options (run_logger), or None
        self._wandb: Any = None
        self._counted: dict[str, float] = {}  # counter -> its value at the resumed step
        self._offset: dict[str, float] = {}

    def open(self) -> None:
        """Cut the file back to the resumed step (or start it empty), open the writers."""
        if self._fh is not None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.resume_step is not None and self.path.exists():
            # rows logged after the checkpoint, and the interrupted run's end-of-training
            # summary (a never-stopped run has none at that step), are dropped
            keep = [r for r in read_metrics(self.path)
                    if r.get("step", 0) <= self.resume_step and "train_runtime" not in r]
            self._counted = {k: r[k] for r in keep for k in COUNTERS
                             if isinstance(r.get(k), (int, float))}
            tmp = self.path.with_name(METRICS_FILE + ".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in keep), encoding="utf-8")
            os.replace(tmp, self.path)  # a kill here leaves the old file or the new, whole
        elif self.resume_step is None:
            self.path.write_text("", encoding="utf-8")
        self._fh = self.path.open("a", encoding="utf-8")
        if self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                purge = None if self.resume_step is None else self.resume_step + 1
                if purge is not None:
                    _after_earlier_event_files(self.dir / "tensorboard")
                self._tb = SummaryWriter(str(self.dir / "tensorboard"), purge_step=purge)
            except ImportError:
                self._tb = None  # tensorboard not installed: metrics.jsonl alone
        if self.wandb is not None:
            self._wandb = wandb_run(self.wandb)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        self.open()
        row = {"step": int(step), "time": round(time.time(), 3)}
        row.update({k: _clean(v) for k, v in metrics.items()})
        for key in set(self._counted) & set(row):
            if not isinstance(row[key], (int, float)):
                continue
            if key not in self._offset:  # a counter that restarted at 0 goes on from the checkpoint
                self._offset[key] = self._counted[key] if row[key] < self._counted[key] else 0
            row[key] += self._offset[key]
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
        if self._fh is not None:
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


def _after_earlier_event_files(directory: Path) -> None:
    """TensorBoard reads event files in name order, which starts with the second they were
    opened: a resumed run's file (whose purge hides the steps it repeats) must sort after the
    interrupted run's, so wait out the second that file was opened in, if it is this one."""
    stamps = [int(p.name.split("tfevents.")[1].split(".")[0]) for p in directory.glob(
        "events.out.tfevents.*") if p.name.split("tfevents.")[1].split(".")[0].isdigit()]
    if stamps and max(stamps) >= int(time.time()):
        time.sleep(max(stamps) + 1 - time.time())


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a metrics.jsonl file (a directory is taken to hold one). A last line cut
    short by a killed run is left out; a broken line elsewhere is an error."""
    p = Path(path)
    if p.is_dir():
        p = p / METRICS_FILE
    lines = [line for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise
    return rows


def trainer_callback(logger: MetricsLogger) -> Any:
    """A transformers TrainerCallback that forwards each log event to ``logger``."""
    from transformers import TrainerCallback

    class TrainerMetrics(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            # the Trainer has loaded the checkpoint's model, optimizer and schedule by now
            if state.is_world_process_zero:
                logger.open()

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
                   **kwargs: Any) -> None:
            if logs and state.is_world_process_zero:
                logger.log(state.global_step, logs)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            logger.close()

    return TrainerMetrics()
