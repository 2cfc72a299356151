"""What a run prints: align's own lines and progress bar, not the libraries' noise.

By default (:func:`configure` with ``verbose=False``) align silences what its own settings or
the library versions it pins cause, and nothing else:

- the deprecation warnings transformers 5 raises about ``gradient_checkpointing`` (TRL 1.16
  still calls the old names on every checkpoint save and evaluation);
- the loading bars of transformers and the ``map`` bars of datasets (one per dataset pass);
- transformers' "mtime may not be reliable" remark when it rotates checkpoints;
- TRL's per-step metrics dict: :func:`replace_progress_bar` puts align's own bar in the place of
  transformers' ``ProgressCallback``, with a few key metrics after it (every metric still goes
  to metrics.jsonl and TensorBoard).

``--verbose`` leaves all of it as the libraries print it. Warnings about anything else (and
every error) are untouched. Progress is also reported to listeners (:func:`listen`), so that
the quickstart can draw one line per stage on the console while each stage's own output goes
to its log file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from typing import Any, Callable, Iterator

_state = {"verbose": False}
_listeners: list[Callable[[int, int], None]] = []

# Warnings raised because of our settings or the versions we pin (see the module docstring).
QUIET_WARNINGS = (r"`(is_)?gradient_checkpointing\w*` is deprecated",)
QUIET_LOGS = re.compile(r"mtime may not be reliable on this filesystem")
# Metrics shown after the progress bar, the first few a run logs, in this order.
BAR_METRICS = ("loss", "rewards/margins", "rewards/accuracies", "reward", "kl", "accuracy",
               "mean_token_accuracy", "eval_loss")
BAR_METRIC_COUNT = 3


class _DropKnown(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not QUIET_LOGS.search(record.getMessage())


_filter = _DropKnown()


def configure(verbose: bool = False) -> None:
    """Set how much the libraries print for the rest of this process (see module docstring).
    Cheap (imports no library): call :func:`quiet_libraries` where the heavy work starts."""
    _state["verbose"] = verbose
    if verbose:
        if _state.get("set_datasets_env"):
            os.environ.pop("HF_DATASETS_DISABLE_PROGRESS_BARS", None)
        return
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=FutureWarning)
    if "HF_DATASETS_DISABLE_PROGRESS_BARS" not in os.environ:
        os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
        _state["set_datasets_env"] = True


def quiet_libraries() -> None:
    """Apply the quiet settings to transformers and datasets (imports them: call it just
    before models load); with --verbose, undo what an earlier quiet call in this process did."""
    import sys

    from transformers.utils import logging as hf_logging

    root = hf_logging.get_logger("transformers")  # creates its handler if not there yet
    targets = [*root.handlers, root]
    if verbose():
        if _state.pop("disabled_hf_bars", False):
            hf_logging.enable_progress_bar()
        for target in targets:
            target.removeFilter(_filter)
        return
    if hf_logging.is_progress_bar_enabled():
        hf_logging.disable_progress_bar()
        _state["disabled_hf_bars"] = True
    for target in targets:
        if _filter not in target.filters:
            target.addFilter(_filter)
    if "datasets" in sys.modules:  # imported before the variable above could take effect
        from datasets.utils.logging import disable_progress_bar

        disable_progress_bar()


def verbose() -> bool:
    return _state["verbose"]


class _DropWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING


@contextlib.contextmanager
def quiet_logger(name: str) -> Iterator[None]:
    """Hold back one library logger's warnings for a block (unless --verbose), for reports
    align replaces with its own line (a reward head initialised on purpose). A filter, not a
    level: transformers runs extra checks when its logger's level is raised."""
    logger = logging.getLogger(name)
    drop = _DropWarnings()
    if not verbose():
        logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


@contextlib.contextmanager
def listen(callback: Callable[[int, int], None]) -> Iterator[None]:
    """Call ``callback(done, total)`` whenever a training loop reports progress in the block."""
    _listeners.append(callback)
    try:
        yield
    finally:
        _listeners.remove(callback)


def report(done: int, total: int) -> None:
    """Tell the listeners that ``done`` of ``total`` steps are finished."""
    for callback in list(_listeners):
        callback(done, total)


def bar_metrics(logs: dict[str, Any]) -> dict[str, str]:
    """The few metrics shown after the progress bar."""
    shown = {}
    for key in BAR_METRICS:
        value = logs.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            shown[key.split("/")[-1]] = f"{value:.4g}"
        if len(shown) == BAR_METRIC_COUNT:
            break
    return shown


def progress_callback(draw: bool = True) -> Any:
    """A TrainerCallback that reports progress to the listeners and, with ``draw``, shows
    align's progress bar (tqdm, with its ETA) with a few key metrics after it, instead of
    transformers' bar that prints every log event as a dict."""
    import sys

    from tqdm import tqdm
    from transformers import TrainerCallback

    class AlignProgress(TrainerCallback):
        bar: Any = None
        latest: dict[str, Any] = {}

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero and draw:
                # a bar on a terminal redraws often; one in a log file now and then
                interval = 0.1 if sys.stderr.isatty() else 10.0
                self.bar = tqdm(total=state.max_steps, initial=state.global_step,
                                dynamic_ncols=True, mininterval=interval, unit="step")
            report(state.global_step, state.max_steps)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)
            report(state.global_step, state.max_steps)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
                   **kwargs: Any) -> None:
            if self.bar is not None and logs:
                self.latest = {**self.latest, **logs}
                shown = bar_metrics(self.latest)
                if shown:
                    self.bar.set_postfix(shown, refresh=False)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return AlignProgress()


def replace_progress_bar(trainer: Any) -> None:
    """Swap transformers' ProgressCallback (or PrinterCallback) on ``trainer`` for align's
    bar; with --verbose keep transformers' and only report progress to the listeners."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    names = {type(cb).__name__ for cb in trainer.callback_handler.callbacks}
    if "AlignProgress" in names:
        return
    if not verbose():
        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)
    trainer.add_callback(progress_callback(draw=not verbose()))
